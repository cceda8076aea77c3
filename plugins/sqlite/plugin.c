/*
 * plugins/sqlite/plugin.c — the sqlite adapter's descriptor, configuration
 * and instance lifetime.  The adapter keeps one SQLite file per environment
 * in a directory (see README.md); this file turns the manifest's
 * configuration into an immutable instance and exports the entry symbol.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sqlite_adapter.h"

#define SQLA_DEFAULT_GRACE_SECONDS (7 * 24 * 3600)
#define SQLA_DEFAULT_BUSY_TIMEOUT_MS 5000

static const envdb_config_key sqla_config_keys[] = {
	{.struct_size = sizeof(envdb_config_key),
	 .name = "base_dir",
	 .description = "directory of the database files (relative to the manifest; created 0700 "
			"if missing)",
	 .flags = ENVDB_CONFIG_REQUIRED},
	{.struct_size = sizeof(envdb_config_key),
	 .name = "trash_dir",
	 .description = "drop moves files here instead of deleting them (same file system as "
			"base_dir)",
	 .flags = 0},
	{.struct_size = sizeof(envdb_config_key),
	 .name = "grace_seconds",
	 .description = "how long dropped files stay in the trash (default 604800; implies "
			"trash_dir <base_dir>/.trash)",
	 .flags = 0},
	{.struct_size = sizeof(envdb_config_key),
	 .name = "busy_timeout_ms",
	 .description = "sqlite busy timeout of the connections the plugin opens (default 5000)",
	 .flags = 0},
	{.struct_size = sizeof(envdb_config_key), .name = NULL, .description = NULL, .flags = 0},
};

/* Parse a non-negative decimal integer no larger than `max`. */
static int parse_count(int64_t *out, const sqla *a, const char *key, const char *value,
		       int64_t max)
{
	char *end = NULL;
	long long v;

	errno = 0;
	v = strtoll(value, &end, 10);
	if (value[0] < '0' || value[0] > '9' || errno != 0 || end == value || *end != '\0' ||
	    v < 0 || v > max)
		return a->host->error(a->host->ctx, ENVDB_ERR_CONFIG, NULL,
				      "configuration %s: '%s' is not an integer between 0 and "
				      "%lld",
				      key, value, (long long)max);
	*out = v;
	return ENVDB_OK;
}

static int not_plain(const sqla *a, const char *key, const char *path)
{
	return a->host->error(a->host->ctx, ENVDB_ERR_CONFIG, NULL,
			      "configuration %s: %s: only printable ascii without '\"', "
			      "'\\', '?', '#' or '%%' is supported",
			      key, path);
}

/*
 * Resolve a configured directory (relative to the manifest's directory),
 * create it with mode 0700 when missing (*created says so), open it and
 * return its canonical absolute path (host->alloc) and descriptor.  With
 * `plain`, the path must pass sqla_path_is_plain() (checked before anything
 * is created, and again once resolved).
 */
static int open_dir(char **path_out, int *fd_out, int *created, const sqla *a,
		    const envdb_config *cfg, const char *key, const char *value, int plain)
{
	char joined[PATH_MAX], canon[PATH_MAX];
	const char *base = ENVDB_STRUCT_HAS(cfg, envdb_config, base_dir) ? cfg->base_dir : NULL;
	struct stat st;
	int fd = -1, n, rc;

	if (value[0] == '\0')
		return a->host->error(a->host->ctx, ENVDB_ERR_CONFIG, NULL,
				      "configuration %s: empty path", key);
	if (value[0] == '/') {
		n = snprintf(joined, sizeof(joined), "%s", value);
	} else {
		if (base == NULL || base[0] != '/')
			return a->host->error(a->host->ctx, ENVDB_ERR_CONFIG, NULL,
					      "configuration %s: relative path '%s' but the "
					      "manifest directory is unknown",
					      key, value);
		n = snprintf(joined, sizeof(joined), "%s/%s", base, value);
	}
	if (n < 0 || (size_t)n >= sizeof(joined))
		return a->host->error(a->host->ctx, ENVDB_ERR_CONFIG, NULL,
				      "configuration %s: path too long", key);
	if (plain && !sqla_path_is_plain(joined))
		return not_plain(a, key, joined);
	*created = mkdir(joined, 0700) == 0;
	if (!*created && errno != EEXIST)
		return a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				      "configuration %s: cannot create directory %s: %s", key,
				      joined, strerror(errno));
	fd = open(joined, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "configuration %s: cannot open directory %s: %s", key,
				    joined, strerror(errno));
		goto fail;
	}
	/* Whoever can write the directory can swap or remove the databases
	 * (as for the kms keyring): owner only. */
	if (fstat(fd, &st) != 0) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "configuration %s: cannot stat directory %s: %s", key, joined,
				    strerror(errno));
		goto fail;
	}
	if ((st.st_mode & 022) != 0) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_CONFIG, NULL,
				    "configuration %s: directory %s is writable by group or others "
				    "(mode %04o): refused; make it 0700",
				    key, joined, (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if (realpath(joined, canon) == NULL) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_IO, NULL,
				    "configuration %s: cannot resolve %s: %s", key, joined,
				    strerror(errno));
		goto fail;
	}
	if (plain && !sqla_path_is_plain(canon)) {
		rc = not_plain(a, key, canon);
		goto fail;
	}
	if (strlen(canon) + 1 + SQLA_FILE_MAX >= PATH_MAX) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_CONFIG, NULL,
				    "configuration %s: %s: path too long", key, canon);
		goto fail;
	}
	*path_out = sqla_strdup(a, canon);
	if (*path_out == NULL) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_NOMEM, NULL,
				    "configuration %s: out of memory", key);
		goto fail;
	}
	*fd_out = fd;
	return ENVDB_OK;
fail:
	if (fd >= 0)
		close(fd);
	if (*created)
		(void)rmdir(joined);
	*created = 0;
	return rc;
}

static void sqla_fini(void *instance)
{
	sqla *a = instance;

	if (a == NULL)
		return;
	if (a->base_fd >= 0)
		close(a->base_fd);
	if (a->trash_fd >= 0)
		close(a->trash_fd);
	if (a->base_dir != NULL)
		a->host->free(a->host->ctx, a->base_dir);
	if (a->trash_dir != NULL)
		a->host->free(a->host->ctx, a->trash_dir);
	a->host->free(a->host->ctx, a);
}

static int sqla_init(void **instance, const envdb_host *host, const envdb_config *cfg)
{
	const char *base_dir = envdb_config_get(cfg, "base_dir");
	const char *trash_dir = envdb_config_get(cfg, "trash_dir");
	const char *grace = envdb_config_get(cfg, "grace_seconds");
	const char *busy = envdb_config_get(cfg, "busy_timeout_ms");
	char default_trash[PATH_MAX];
	struct stat st_base, st_trash;
	int created_base = 0, created_trash = 0;
	int64_t v;
	sqla *a;
	int rc;

	*instance = NULL;
	if (sqlite3_threadsafe() == 0)
		return host->error(host->ctx, ENVDB_ERR_CONFIG, NULL,
				   "the sqlite library was built without thread safety");
	a = host->alloc(host->ctx, sizeof(*a));
	if (a == NULL)
		return host->error(host->ctx, ENVDB_ERR_NOMEM, NULL, "out of memory");
	memset(a, 0, sizeof(*a));
	a->host = host;
	a->base_fd = -1;
	a->trash_fd = -1;
	a->grace_seconds = SQLA_DEFAULT_GRACE_SECONDS;
	a->busy_timeout_ms = SQLA_DEFAULT_BUSY_TIMEOUT_MS;

	if (base_dir == NULL) {
		rc = host->error(host->ctx, ENVDB_ERR_CONFIG, NULL,
				 "configuration base_dir: missing (the directory of the "
				 "database files)");
		goto fail;
	}
	if (grace != NULL) {
		rc = parse_count(&v, a, "grace_seconds", grace, INT64_MAX / 2);
		if (rc != ENVDB_OK)
			goto fail;
		a->grace_seconds = v;
	}
	if (busy != NULL) {
		rc = parse_count(&v, a, "busy_timeout_ms", busy, INT_MAX);
		if (rc != ENVDB_OK)
			goto fail;
		a->busy_timeout_ms = (int)v;
	}
	rc = open_dir(&a->base_dir, &a->base_fd, &created_base, a, cfg, "base_dir", base_dir, 1);
	if (rc != ENVDB_OK)
		goto fail;

	if (trash_dir == NULL && grace != NULL) {
		snprintf(default_trash, sizeof(default_trash), "%s/.trash", a->base_dir);
		trash_dir = default_trash;
	}
	if (trash_dir != NULL) {
		rc = open_dir(&a->trash_dir, &a->trash_fd, &created_trash, a, cfg, "trash_dir",
			      trash_dir, 0);
		if (rc != ENVDB_OK)
			goto fail;
		if (fstat(a->base_fd, &st_base) != 0 || fstat(a->trash_fd, &st_trash) != 0) {
			rc = host->error(host->ctx, ENVDB_ERR_IO, NULL,
					 "configuration trash_dir: cannot stat %s: %s",
					 a->trash_dir, strerror(errno));
			goto fail;
		}
		/* Drop moves files with rename(2): the trash must be on the same
		 * file system, and must not be the database directory itself. */
		if (st_base.st_dev != st_trash.st_dev) {
			rc = host->error(host->ctx, ENVDB_ERR_CONFIG, NULL,
					 "configuration trash_dir: %s is not on the file system "
					 "of base_dir %s",
					 a->trash_dir, a->base_dir);
			goto fail;
		}
		if (st_base.st_ino == st_trash.st_ino) {
			rc = host->error(host->ctx, ENVDB_ERR_CONFIG, NULL,
					 "configuration trash_dir: %s is base_dir itself",
					 a->trash_dir);
			goto fail;
		}
		sqla_trash_purge(a);
	}
	*instance = a;
	return ENVDB_OK;
fail:
	/* Leave nothing behind: directories made here go again (when empty). */
	if (created_trash)
		(void)rmdir(a->trash_dir);
	if (created_base)
		(void)rmdir(a->base_dir);
	sqla_fini(a);
	return rc;
}

static const envdb_adapter_ops sqla_ops = {
	.struct_size = sizeof(envdb_adapter_ops),
	/* No AUTHENTICATES, REVOKE or EXPIRY: SQLite has no authentication,
	 * so none of them could be honoured (see README.md).  READ_ONLY: the
	 * read-only credential is the URL query "?mode=ro" (its handle), with
	 * which SQLite itself refuses every write on the connection.
	 * ROTATE_OVERLAP holds trivially: a previous token keeps "working"
	 * because no token is ever checked. */
	.capabilities = ENVDB_ADAPTER_CAP_READ_ONLY | ENVDB_ADAPTER_CAP_ROTATE_OVERLAP |
			ENVDB_ADAPTER_CAP_PROBE | ENVDB_ADAPTER_CAP_LIST |
			ENVDB_ADAPTER_CAP_DEPLOYMENT,
	.database_name = sqla_database_name,
	.create = sqla_create,
	.drop = sqla_drop,
	.mint = sqla_mint,
	.revoke = NULL,
	.probe = sqla_probe,
	.list = sqla_list,
};

/* The URLs this adapter's databases have (the v4 -> v5 migration picks the
 * adapter of a legacy URL by them). */
static const char *const sqla_url_schemes[] = {"file", NULL};

static const envdb_plugin_descriptor sqla_descriptor = {
	.struct_size = sizeof(envdb_plugin_descriptor),
	.abi_major = ENVDB_ABI_MAJOR,
	.abi_minor = 1, /* envdb_host.deployment_id, the deployment_id members */
	.name = "sqlite",
	.version = PACKAGE_VERSION,
	.description = "one sqlite file per environment (no authentication: tokens are not "
		       "checked)",
	.kind = ENVDB_PLUGIN_ADAPTER,
	.flags = ENVDB_PLUGIN_THREAD_SAFE,
	.config_keys = sqla_config_keys,
	.init = sqla_init,
	.fini = sqla_fini,
	.ops = &sqla_ops,
	.url_schemes = sqla_url_schemes,
};

ENVDB_PLUGIN_DEFINE(sqla_descriptor)
