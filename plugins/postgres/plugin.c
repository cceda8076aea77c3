/*
 * plugins/postgres/plugin.c — the postgres adapter's descriptor,
 * configuration and instance lifetime.  The adapter gives each environment
 * its own PostgreSQL database and login roles (see README.md); this file
 * turns the manifest's configuration into an instance and exports the
 * entry symbol.
 *
 * The administrator's connection string is a secret: the manifest names a
 * file or an environment variable (admin_conninfo_file / admin_conninfo_env)
 * and the host hands the value to init in secure memory it wipes afterwards,
 * so init copies it (and the password it carries, for scrubbing messages)
 * into secure memory the instance owns until fini.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pg_adapter.h"

#define PGA_DEFAULT_PREFIX "envdb_"
#define PGA_DEFAULT_PORT "5432"

static const envdb_config_key pga_config_keys[] = {
	{.struct_size = sizeof(envdb_config_key),
	 .name = "admin_conninfo",
	 .description = "libpq connection string (key=value or postgresql:// URI) of a role "
			"with CREATEDB and CREATEROLE; give admin_conninfo_file or "
			"admin_conninfo_env",
	 .flags = ENVDB_CONFIG_REQUIRED | ENVDB_CONFIG_SECRET},
	{.struct_size = sizeof(envdb_config_key),
	 .name = "client_host",
	 .description = "host name or address clients use in the database url (default: the "
			"host of admin_conninfo when it is a tcp host)",
	 .flags = 0},
	{.struct_size = sizeof(envdb_config_key),
	 .name = "client_port",
	 .description = "port clients use in the database url (default: the port of "
			"admin_conninfo, else 5432)",
	 .flags = 0},
	{.struct_size = sizeof(envdb_config_key),
	 .name = "prefix",
	 .description = "database and role name prefix, [a-z][a-z0-9_]{0,15} (default envdb_)",
	 .flags = 0},
	{.struct_size = sizeof(envdb_config_key),
	 .name = "template",
	 .description = "template database of CREATE DATABASE (default: the server's, "
			"template1)",
	 .flags = 0},
	{.struct_size = sizeof(envdb_config_key),
	 .name = "connection_limit",
	 .description = "CONNECTION LIMIT of each environment's database (default -1: none)",
	 .flags = 0},
	{.struct_size = sizeof(envdb_config_key), .name = NULL, .description = NULL, .flags = 0},
};

static int cfg_error(const pga *a, const char *key, const char *fmt, ...) ENVDB_PRINTF(3, 4);
static int cfg_error(const pga *a, const char *key, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return a->host->error(a->host->ctx, ENVDB_ERR_CONFIG, NULL, "configuration %s: %s", key,
			      msg);
}

static int prefix_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n < 1 || n > PGA_PREFIX_MAX || s[0] < 'a' || s[0] > 'z')
		return 0;
	for (i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

/* A DNS name, an IPv4 address or an IPv6 literal (without brackets): only
 * characters a URL carries verbatim. */
static int host_valid(const char *s)
{
	size_t i, n = strlen(s);
	int colon = strchr(s, ':') != NULL;

	if (n < 1 || n > 253 || s[0] == '-' || s[0] == '.')
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (colon ? !(isxdigit(c) || c == ':' || c == '.')
			  : !(isalnum(c) || c == '-' || c == '.'))
			return 0;
	}
	return 1;
}

static int port_valid(const char *s)
{
	char *end = NULL;
	long v;

	if (s[0] < '0' || s[0] > '9' || strlen(s) > 5)
		return 0;
	errno = 0;
	v = strtol(s, &end, 10);
	return errno == 0 && *end == '\0' && v >= 1 && v <= 65535;
}

/* A secure copy of `s` (host->secure_alloc); NULL when out of memory. */
static char *secure_strdup(const pga *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = a->host->secure_alloc(a->host->ctx, n);

	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

/*
 * Check the admin connection string without echoing anything of it (libpq's
 * parse errors quote the offending part), keep a secure copy of its
 * password for scrubbing, and take the client host and port from it when
 * the configuration gives none.
 */
static int load_conninfo(pga *a, const char *conninfo, const char **client_host,
			 const char **client_port, char *host_buf, size_t host_cap, char *port_buf,
			 size_t port_cap)
{
	PQconninfoOption *opts, *o;
	char *err = NULL;
	int rc = ENVDB_OK;

	if (conninfo[0] == '\0')
		return a->host->error(a->host->ctx, ENVDB_ERR_CONFIG, NULL,
				      "configuration admin_conninfo: empty");
	opts = PQconninfoParse(conninfo, &err);
	if (opts == NULL) {
		if (err != NULL)
			PQfreemem(err);
		return a->host->error(a->host->ctx, ENVDB_ERR_CONFIG, NULL,
				      "configuration admin_conninfo: not a valid libpq connection "
				      "string (key=value pairs or a postgresql:// uri)");
	}
	a->admin_conninfo = secure_strdup(a, conninfo);
	if (a->admin_conninfo == NULL) {
		rc = a->host->error(a->host->ctx, ENVDB_ERR_NOMEM, NULL,
				    "init: out of secure memory");
		goto done;
	}
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (strcmp(o->keyword, "password") == 0) {
			a->admin_password = secure_strdup(a, o->val);
			if (a->admin_password == NULL) {
				rc = a->host->error(a->host->ctx, ENVDB_ERR_NOMEM, NULL,
						    "init: out of secure memory");
				goto done;
			}
		} else if (strcmp(o->keyword, "host") == 0 && *client_host == NULL) {
			/* A single TCP host: not a socket directory, not a list. */
			if (o->val[0] != '/' && o->val[0] != '@' && strchr(o->val, ',') == NULL &&
			    strlen(o->val) < host_cap && host_valid(o->val)) {
				snprintf(host_buf, host_cap, "%s", o->val);
				*client_host = host_buf;
			}
		} else if (strcmp(o->keyword, "hostaddr") == 0 && *client_host == NULL) {
			if (strchr(o->val, ',') == NULL && strlen(o->val) < host_cap &&
			    host_valid(o->val)) {
				snprintf(host_buf, host_cap, "%s", o->val);
				*client_host = host_buf;
			}
		} else if (strcmp(o->keyword, "port") == 0 && *client_port == NULL) {
			if (port_valid(o->val) && strlen(o->val) < port_cap) {
				snprintf(port_buf, port_cap, "%s", o->val);
				*client_port = port_buf;
			}
		}
	}
done:
	for (o = opts; o->keyword != NULL; o++)
		if (o->val != NULL)
			pga_wipe(o->val, strlen(o->val));
	PQconninfoFree(opts);
	return rc;
}

static void pga_fini(void *instance)
{
	pga *a = instance;

	if (a == NULL)
		return;
	pga_admin_close(a);
	if (a->admin_conninfo != NULL)
		a->host->secure_free(a->host->ctx, a->admin_conninfo);
	if (a->admin_password != NULL)
		a->host->secure_free(a->host->ctx, a->admin_password);
	if (a->client_host != NULL)
		a->host->free(a->host->ctx, a->client_host);
	if (a->template_db != NULL)
		a->host->free(a->host->ctx, a->template_db);
	a->host->free(a->host->ctx, a);
}

static int pga_init(void **instance, const envdb_host *host, const envdb_config *cfg)
{
	const char *conninfo = envdb_config_get(cfg, "admin_conninfo");
	const char *client_host = envdb_config_get(cfg, "client_host");
	const char *client_port = envdb_config_get(cfg, "client_port");
	const char *prefix = envdb_config_get(cfg, "prefix");
	const char *template_db = envdb_config_get(cfg, "template");
	const char *limit = envdb_config_get(cfg, "connection_limit");
	char host_buf[256], port_buf[8];
	pga *a;
	int rc;

	*instance = NULL;
	if (!ENVDB_STRUCT_HAS(host, envdb_host, random))
		return host->error(host->ctx, ENVDB_ERR_ABI, NULL,
				   "init: the host's service table is too old");
	if (sodium_init() < 0)
		return host->error(host->ctx, ENVDB_ERR_GENERIC, NULL,
				   "init: libsodium cannot be initialised");
	a = host->alloc(host->ctx, sizeof(*a));
	if (a == NULL)
		return host->error(host->ctx, ENVDB_ERR_NOMEM, NULL, "init: out of memory");
	memset(a, 0, sizeof(*a));
	a->host = host;
	a->connection_limit = -1;

	if (conninfo == NULL) {
		rc = host->error(host->ctx, ENVDB_ERR_CONFIG, NULL,
				 "configuration admin_conninfo: missing (give admin_conninfo_file "
				 "or admin_conninfo_env)");
		goto fail;
	}
	if (client_host != NULL && (client_host[0] == '/' || !host_valid(client_host))) {
		rc = cfg_error(a, "client_host",
			       "'%s' is not a host name or an ip address (clients need a tcp host)",
			       client_host);
		goto fail;
	}
	if (client_port != NULL && !port_valid(client_port)) {
		rc = cfg_error(a, "client_port", "'%s' is not a port number (1-65535)",
			       client_port);
		goto fail;
	}
	if (prefix == NULL)
		prefix = PGA_DEFAULT_PREFIX;
	if (!prefix_valid(prefix)) {
		rc = cfg_error(a, "prefix",
			       "'%s' is not a valid prefix ([a-z][a-z0-9_]{0,15}: a lowercase "
			       "letter, then at most 15 lowercase letters, digits or '_')",
			       prefix);
		goto fail;
	}
	snprintf(a->prefix, sizeof(a->prefix), "%s", prefix);
	if (template_db != NULL) {
		size_t i, n = strlen(template_db);
		for (i = 0; i < n; i++)
			if ((unsigned char)template_db[i] < 0x20)
				break;
		if (n == 0 || n > 63 || i < n) {
			rc = host->error(host->ctx, ENVDB_ERR_CONFIG, NULL,
					 "configuration template: not a database name (1 to 63 "
					 "bytes, no control characters)");
			goto fail;
		}
		a->template_db = pga_strdup(a, template_db);
		if (a->template_db == NULL) {
			rc = host->error(host->ctx, ENVDB_ERR_NOMEM, NULL, "init: out of memory");
			goto fail;
		}
	}
	if (limit != NULL) {
		char *end = NULL;
		long v;

		errno = 0;
		v = strtol(limit, &end, 10);
		if (limit[0] == '\0' || errno != 0 || *end != '\0' || v < -1 || v > 1000000) {
			rc = cfg_error(a, "connection_limit",
				       "'%s' is not an integer between -1 and 1000000", limit);
			goto fail;
		}
		a->connection_limit = (int)v;
	}

	rc = load_conninfo(a, conninfo, &client_host, &client_port, host_buf, sizeof(host_buf),
			   port_buf, sizeof(port_buf));
	if (rc != ENVDB_OK)
		goto fail;
	if (client_host == NULL) {
		rc = host->error(host->ctx, ENVDB_ERR_CONFIG, NULL,
				 "configuration client_host: missing, and admin_conninfo names no "
				 "single tcp host to take it from");
		goto fail;
	}
	a->client_host = pga_strdup(a, client_host);
	if (a->client_host == NULL) {
		rc = host->error(host->ctx, ENVDB_ERR_NOMEM, NULL, "init: out of memory");
		goto fail;
	}
	snprintf(a->client_port, sizeof(a->client_port), "%s",
		 client_port != NULL ? client_port : PGA_DEFAULT_PORT);
	/* No connection here: a server that is down must not stop the host
	 * from starting; the first operation connects. */
	*instance = a;
	return ENVDB_OK;
fail:
	pga_fini(a);
	return rc;
}

static const envdb_adapter_ops pga_ops = {
	.struct_size = sizeof(envdb_adapter_ops),
	.capabilities = ENVDB_ADAPTER_CAP_READ_ONLY | ENVDB_ADAPTER_CAP_ROTATE_OVERLAP |
			ENVDB_ADAPTER_CAP_REVOKE | ENVDB_ADAPTER_CAP_EXPIRY |
			ENVDB_ADAPTER_CAP_PROBE | ENVDB_ADAPTER_CAP_LIST |
			ENVDB_ADAPTER_CAP_AUTHENTICATES | ENVDB_ADAPTER_CAP_SUSPEND |
			ENVDB_ADAPTER_CAP_DEPLOYMENT,
	.database_name = pga_database_name,
	.create = pga_create,
	.drop = pga_drop,
	.mint = pga_mint,
	.revoke = pga_revoke,
	.probe = pga_probe,
	.list = pga_list,
	.suspend = pga_suspend,
	.resume = pga_resume,
};

/* The URLs this adapter's databases have (the v4 -> v5 migration picks the
 * adapter of a legacy URL by them). */
static const char *const pga_url_schemes[] = {"postgres", "postgresql", NULL};

static const envdb_plugin_descriptor pga_descriptor = {
	.struct_size = sizeof(envdb_plugin_descriptor),
	.abi_major = ENVDB_ABI_MAJOR,
	.abi_minor = 1, /* suspend/resume, deployment id */
	.name = "postgres",
	.version = PACKAGE_VERSION,
	.description = "one postgresql database and its own login roles per environment",
	.kind = ENVDB_PLUGIN_ADAPTER,
	.flags = ENVDB_PLUGIN_REMOTE,
	.config_keys = pga_config_keys,
	.init = pga_init,
	.fini = pga_fini,
	.ops = &pga_ops,
	.url_schemes = pga_url_schemes,
};

ENVDB_PLUGIN_DEFINE(pga_descriptor)
