/*
 * plugins/turso/turso_config.c — the Turso adapter's configuration: the
 * declared keys, their defaults and validation, and the duration and token
 * expiration formats.
 *
 * The Platform API token is declared ENVDB_CONFIG_SECRET: the manifest names
 * it with api_token_file / api_token_env, the host reads it and passes it as
 * `api_token` during init only; it is copied here into host secure memory
 * and freed (zeroed) by turso_config_free().
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "turso.h"

const envdb_config_key turso_config_keys[] = {
	{ sizeof(envdb_config_key), "organization",
	  "Turso organization slug (the {organizationSlug} of the Platform API)",
	  ENVDB_CONFIG_REQUIRED },
	{ sizeof(envdb_config_key), "group", "group the databases are created in (default: default)",
	  0 },
	{ sizeof(envdb_config_key), "api_token",
	  "Platform API token (scopes read, db:create, db:delete, db:mint-token); give "
	  "api_token_file or api_token_env",
	  ENVDB_CONFIG_REQUIRED | ENVDB_CONFIG_SECRET },
	{ sizeof(envdb_config_key), "api_url", "Platform API base URL (default https://api.turso.tech)",
	  0 },
	{ sizeof(envdb_config_key), "token_expiration",
	  "lifetime of minted tokens when the host asks for none: never (default) or e.g. 7d, 2w1d30m",
	  0 },
	{ sizeof(envdb_config_key), "data_plane_scheme",
	  "scheme of the database HTTP endpoint: https (default) or http (local servers)", 0 },
	{ sizeof(envdb_config_key), "data_plane_url",
	  "base URL of the libSQL HTTP endpoint used for every database instead of its Hostname "
	  "(self-hosting, tests)",
	  0 },
	{ sizeof(envdb_config_key), "name_prefix",
	  "prefix of database names (default env-); names are <prefix><32 hex of the environment id>",
	  0 },
	{ sizeof(envdb_config_key), "apply_storage_limit",
	  "send the environment's storage limit as size_limit on create (yes/no, default no)", 0 },
	{ sizeof(envdb_config_key), "connect_timeout", "TCP/TLS connect timeout (default 10s)", 0 },
	{ sizeof(envdb_config_key), "request_timeout", "timeout of one HTTP request (default 30s)", 0 },
	{ sizeof(envdb_config_key), "operation_timeout",
	  "bound of one operation when the host sets no earlier deadline (default 120s)", 0 },
	{ sizeof(envdb_config_key), "ready_timeout",
	  "how long create waits for a new database to answer SELECT 1 (default 60s)", 0 },
	{ sizeof(envdb_config_key), "cleanup_timeout",
	  "budget of the compensating delete after a failed create (default 30s)", 0 },
	{ sizeof(envdb_config_key), "max_attempts",
	  "attempts per request (every request, including the token mint right after create), "
	  "1-20 (default 6)",
	  0 },
	{ sizeof(envdb_config_key), "ca_file",
	  "PEM file of the CA certificates to trust for the Platform API and the data plane "
	  "(private CAs; default: the system's)",
	  0 },
	{ sizeof(envdb_config_key), "validate_token",
	  "check the API token at start with GET /v1/auth/validate (yes/no, default yes)", 0 },
	{ sizeof(envdb_config_key), "deployment_id",
	  "the envdb deployment whose databases carry name_prefix; calls for another deployment "
	  "are refused (optional)",
	  0 },
	{ sizeof(envdb_config_key), "retry_initial_delay", "first backoff delay (default 1s)", 0 },
	{ sizeof(envdb_config_key), "retry_max_delay", "largest backoff delay (default 30s)", 0 },
	{ sizeof(envdb_config_key), NULL, NULL, 0 },
};

int turso_parse_duration_ms(int64_t *ms, const char *s)
{
	char *end = NULL;
	long long v;
	int64_t mult;

	if (s == NULL || !isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || v < 0)
		return -1;
	if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(end, "h") == 0)
		mult = 3600 * 1000;
	else if (strcmp(end, "d") == 0)
		mult = 86400 * 1000;
	else if (strcmp(end, "w") == 0)
		mult = 7 * 86400 * 1000;
	else
		return -1;
	if (v > INT64_MAX / mult)
		return -1;
	*ms = (int64_t)v * mult;
	return 0;
}

bool turso_expiration_valid(const char *s)
{
	const char *p = s;
	size_t n = 0;

	if (s == NULL || *s == '\0')
		return false;
	if (strcmp(s, "never") == 0)
		return true;
	if (strlen(s) > 32)
		return false;
	while (*p) {
		const char *d = p;
		while (isdigit((unsigned char)*p))
			p++;
		if (p == d || strchr("wdhms", *p) == NULL || *p == '\0')
			return false;
		p++;
		n++;
	}
	return n > 0;
}

int64_t turso_expiration_seconds(const char *s)
{
	int64_t total = 0;
	const char *p = s;

	if (s == NULL || strcmp(s, "never") == 0)
		return 0;
	while (*p) {
		int64_t v = 0;
		while (isdigit((unsigned char)*p)) {
			if (v > INT64_MAX / 10 - 10)
				return 0;
			v = v * 10 + (*p++ - '0');
		}
		switch (*p++) {
		case 'w': v *= 7 * 86400; break;
		case 'd': v *= 86400; break;
		case 'h': v *= 3600; break;
		case 'm': v *= 60; break;
		case 's': break;
		default: return 0;
		}
		if (v > INT64_MAX / 4 - total)
			return 0;
		total += v;
	}
	return total;
}

void turso_format_expiration(char *out, size_t cap, int64_t seconds)
{
	int64_t d = seconds / 86400, h = (seconds % 86400) / 3600, m = (seconds % 3600) / 60,
		s = seconds % 60;
	size_t off = 0;

	out[0] = '\0';
	if (d > 0 && off < cap)
		off += (size_t)snprintf(out + off, cap - off, "%lldd", (long long)d);
	if (h > 0 && off < cap)
		off += (size_t)snprintf(out + off, cap - off, "%lldh", (long long)h);
	if (m > 0 && off < cap)
		off += (size_t)snprintf(out + off, cap - off, "%lldm", (long long)m);
	if ((s > 0 || off == 0) && off < cap)
		snprintf(out + off, cap - off, "%llds", (long long)(s > 0 ? s : 1));
}

static int config_str(turso *t, char **dst, const envdb_config *cfg, const char *key,
		      const char *def)
{
	const char *v = envdb_config_get(cfg, key);

	if (v == NULL)
		v = def;
	if (v == NULL) {
		*dst = NULL;
		return ENVDB_OK;
	}
	*dst = turso_strdup(t, v);
	if (*dst == NULL)
		return t->host->error(t->host->ctx, ENVDB_ERR_NOMEM, NULL,
				      "init: out of memory reading %s", key);
	return ENVDB_OK;
}

static int config_duration(turso *t, int64_t *dst, const envdb_config *cfg, const char *key,
			   int64_t def_ms, int64_t min_ms)
{
	const char *v = envdb_config_get(cfg, key);

	if (v == NULL) {
		*dst = def_ms;
		return ENVDB_OK;
	}
	if (turso_parse_duration_ms(dst, v) != 0 || *dst < min_ms)
		return t->host->error(t->host->ctx, ENVDB_ERR_CONFIG, NULL,
				      "config %s: invalid duration '%s' (expected e.g. "
				      "500ms, 10s, 5m, 1h; at least %lldms)",
				      key, v, (long long)min_ms);
	return ENVDB_OK;
}

static bool slug_valid(const char *s, size_t max)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > max)
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];
		if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '-' ||
		      c == '_'))
			return false;
	}
	return true;
}

static bool base_url_valid(const char *u)
{
	return (strncmp(u, "https://", 8) == 0 && u[8] != '\0') ||
	       (strncmp(u, "http://", 7) == 0 && u[7] != '\0');
}

static void strip_trailing_slash(char *s)
{
	size_t n = s ? strlen(s) : 0;

	while (n > 0 && s[n - 1] == '/')
		s[--n] = '\0';
}

int turso_config_parse(turso *t, const envdb_config *cfg)
{
	const envdb_host *h = t->host;
	const char *v;
	int rc;

	if ((rc = config_str(t, &t->org, cfg, "organization", NULL)) != 0 ||
	    (rc = config_str(t, &t->group, cfg, "group", "default")) != 0 ||
	    (rc = config_str(t, &t->api_url, cfg, "api_url", "https://api.turso.tech")) != 0 ||
	    (rc = config_str(t, &t->token_expiration, cfg, "token_expiration", "never")) != 0 ||
	    (rc = config_str(t, &t->data_plane_scheme, cfg, "data_plane_scheme", "https")) != 0 ||
	    (rc = config_str(t, &t->data_plane_url, cfg, "data_plane_url", NULL)) != 0 ||
	    (rc = config_str(t, &t->name_prefix, cfg, "name_prefix", "env-")) != 0 ||
	    (rc = config_str(t, &t->deployment_id, cfg, "deployment_id", NULL)) != 0 ||
	    (rc = config_str(t, &t->ca_file, cfg, "ca_file", NULL)) != 0)
		return rc;
	if (t->ca_file != NULL) {
		FILE *f = fopen(t->ca_file, "r");
		if (f == NULL)
			return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL,
					"config ca_file: cannot open %s: %s", t->ca_file,
					strerror(errno));
		fclose(f);
	}
	if (t->deployment_id != NULL && t->deployment_id[0] == '\0')
		return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL, "config deployment_id: empty");
	v = envdb_config_get(cfg, "validate_token");
	if (v == NULL || strcmp(v, "yes") == 0 || strcmp(v, "true") == 0)
		t->validate_token = true;
	else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0)
		t->validate_token = false;
	else
		return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL,
				"config validate_token: '%s' is not yes or no", v);

	if (t->org == NULL || !slug_valid(t->org, TURSO_LABEL_MAX))
		return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL,
				"config organization: %s",
				t->org ? "must be a Turso organization slug ([a-z0-9-])"
				       : "is required");
	if (!slug_valid(t->group, TURSO_NAME_MAX))
		return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL,
				"config group: invalid group name '%s'", t->group);
	strip_trailing_slash(t->api_url);
	if (!base_url_valid(t->api_url) || strpbrk(t->api_url, "?#@ ") != NULL)
		return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL,
				"config api_url: '%s' is not an http(s) base URL without "
				"credentials, query or fragment",
				t->api_url);
	if (!turso_expiration_valid(t->token_expiration))
		return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL,
				"config token_expiration: '%s' is neither 'never' nor a "
				"duration such as 7d or 2w1d30m",
				t->token_expiration);
	if (strcmp(t->data_plane_scheme, "https") != 0 && strcmp(t->data_plane_scheme, "http") != 0)
		return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL,
				"config data_plane_scheme: '%s' is neither https nor http",
				t->data_plane_scheme);
	if (t->data_plane_url != NULL) {
		strip_trailing_slash(t->data_plane_url);
		if (!base_url_valid(t->data_plane_url) ||
		    strpbrk(t->data_plane_url, "?#@ ") != NULL)
			return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL,
					"config data_plane_url: '%s' is not an http(s) base "
					"URL without credentials, query or fragment",
					t->data_plane_url);
	}
	{
		size_t n = strlen(t->name_prefix), i;
		bool ok = n >= 1 && n <= TURSO_PREFIX_MAX && isalpha((unsigned char)t->name_prefix[0]);
		for (i = 0; ok && i < n; i++)
			ok = islower((unsigned char)t->name_prefix[i]) ||
			     isdigit((unsigned char)t->name_prefix[i]) || t->name_prefix[i] == '-';
		if (!ok)
			return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL,
					"config name_prefix: '%s' must be 1-%d characters of "
					"[a-z0-9-] starting with a letter",
					t->name_prefix, TURSO_PREFIX_MAX);
	}
	{
		/* The name budget: prefix + 32 hex, and the hostname label
		 * "<name>-<org>" must fit in 63 characters. */
		size_t name_len = strlen(t->name_prefix) + TURSO_UUID_HEX;
		if (name_len + 1 + strlen(t->org) > TURSO_LABEL_MAX)
			return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL,
					"config organization/name_prefix: database names "
					"'%s<32 hex>' (%zu characters) with organization '%s' exceed "
					"the %d-character hostname label <database>-<organization>",
					t->name_prefix, name_len, t->org, TURSO_LABEL_MAX);
	}

	v = envdb_config_get(cfg, "apply_storage_limit");
	if (v == NULL || strcmp(v, "no") == 0 || strcmp(v, "false") == 0)
		t->apply_storage_limit = false;
	else if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0)
		t->apply_storage_limit = true;
	else
		return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL,
				"config apply_storage_limit: '%s' is not yes or no", v);

	if ((rc = config_duration(t, &t->connect_timeout_ms, cfg, "connect_timeout", 10000, 1)) ||
	    (rc = config_duration(t, &t->request_timeout_ms, cfg, "request_timeout", 30000, 1)) ||
	    (rc = config_duration(t, &t->operation_timeout_ms, cfg, "operation_timeout", 120000,
				  1)) ||
	    (rc = config_duration(t, &t->ready_timeout_ms, cfg, "ready_timeout", 60000, 0)) ||
	    (rc = config_duration(t, &t->cleanup_timeout_ms, cfg, "cleanup_timeout", 30000, 1)) ||
	    (rc = config_duration(t, &t->retry_initial_ms, cfg, "retry_initial_delay", 1000, 1)) ||
	    (rc = config_duration(t, &t->retry_max_ms, cfg, "retry_max_delay", 30000, 1)))
		return rc;
	if (t->retry_max_ms < t->retry_initial_ms)
		t->retry_max_ms = t->retry_initial_ms;

	v = envdb_config_get(cfg, "max_attempts");
	t->max_attempts = 6;
	if (v != NULL) {
		char *end = NULL;
		long n = strtol(v, &end, 10);
		if (end == v || *end != '\0' || n < 1 || n > 20)
			return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL,
					"config max_attempts: '%s' is not a number from 1 "
					"to 20",
					v);
		t->max_attempts = (int)n;
	}

	v = envdb_config_get(cfg, "api_token");
	if (v == NULL || v[0] == '\0')
		return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL,
				"config api_token: missing or empty (give api_token_file "
				"or api_token_env)");
	t->api_token_len = strlen(v);
	/* A trailing newline from a token file is not part of the token. */
	while (t->api_token_len > 0 &&
	       (v[t->api_token_len - 1] == '\n' || v[t->api_token_len - 1] == '\r' ||
		v[t->api_token_len - 1] == ' '))
		t->api_token_len--;
	{
		size_t i;
		for (i = 0; i < t->api_token_len; i++)
			if ((unsigned char)v[i] <= ' ' || (unsigned char)v[i] >= 0x7f)
				return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL,
						"config api_token: contains whitespace or "
						"control characters");
	}
	if (t->api_token_len == 0)
		return h->error(h->ctx, ENVDB_ERR_CONFIG, NULL,
				"config api_token: empty");
	t->api_token = h->secure_alloc(h->ctx, t->api_token_len + 1);
	if (t->api_token == NULL)
		return h->error(h->ctx, ENVDB_ERR_NOMEM, NULL,
				"init: cannot allocate secure memory for the api token");
	memcpy(t->api_token, v, t->api_token_len);
	t->api_token[t->api_token_len] = '\0';
	return ENVDB_OK;
}

void turso_config_free(turso *t)
{
	const envdb_host *h = t->host;
	char **strs[] = { &t->org, &t->group, &t->api_url, &t->token_expiration,
			  &t->data_plane_scheme, &t->data_plane_url, &t->name_prefix,
			  &t->deployment_id, &t->ca_file };
	size_t i;

	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		if (*strs[i] != NULL)
			h->free(h->ctx, *strs[i]);
		*strs[i] = NULL;
	}
	if (t->api_token != NULL)
		h->secure_free(h->ctx, t->api_token);
	t->api_token = NULL;
	t->api_token_len = 0;
}
