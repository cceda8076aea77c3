/*
 * plugins/turso/turso.h — private interfaces between the files of the Turso
 * adapter: the instance, its configuration, the HTTP layer (retries,
 * backoff, deadlines, error reports) and the Platform API / Hrana calls.
 *
 * Nothing here leaves the plugin: every symbol has hidden visibility (the
 * plugin is built with -fvisibility=hidden and exports only
 * envdb_plugin_entry_v1).
 *
 * Secrets: the Platform API token (turso.api_token) and every database JWT
 * live only in host secure memory (host->secure_alloc).  They are never
 * put in a URL, a message or a log line; messages additionally pass through
 * turso_redact() before they reach the host.
 */
#ifndef ENVDB_TURSO_H
#define ENVDB_TURSO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include <envdb/adapter.h>

#define TURSO_PLUGIN_NAME "turso"
#define TURSO_PLUGIN_VERSION "0.1.0"

/** Length of the hexadecimal part of a database name (a UUID without dashes). */
#define TURSO_UUID_HEX 32
/** Turso's documented limit on a database name. */
#define TURSO_NAME_MAX 64
/** DNS label limit that bounds "<database>-<organization>" in the hostname. */
#define TURSO_LABEL_MAX 63
/** Maximum length of name_prefix. */
#define TURSO_PREFIX_MAX 16

/** The plugin instance.  Owned by the plugin; created by init, freed by fini.
 * Calls on one instance are serialized by the host (no THREAD_SAFE flag), so
 * the curl handle is reused without a lock. */
typedef struct turso {
	const envdb_host *host;      /* borrowed from the host until fini */

	/* configuration; strings in host->alloc memory */
	char *org;                   /* organization slug */
	char *group;                 /* group the databases live in */
	char *api_url;               /* Platform API base, no trailing slash */
	char *token_expiration;      /* "never" or e.g. "7d", "2w1d30m" */
	char *data_plane_scheme;     /* "https" (default) or "http" */
	char *data_plane_url;        /* optional base URL override, or NULL */
	char *name_prefix;           /* "env-" by default; this deployment's
				      ownership marker (README.md) */
	char *deployment_id;         /* optional: the deployment the prefix
				      belongs to, or NULL */
	char *ca_file;               /* optional CA bundle (CURLOPT_CAINFO) */
	bool validate_token;         /* GET /v1/auth/validate at init */
	bool apply_storage_limit;    /* send size_limit from storage_limit_mb */
	int64_t connect_timeout_ms;
	int64_t request_timeout_ms;
	int64_t operation_timeout_ms; /* own bound when the host sets no deadline */
	int64_t ready_timeout_ms;    /* readiness wait after create */
	int64_t cleanup_timeout_ms;  /* budget of a compensating delete */
	int max_attempts;            /* per request, >= 1 */
	int64_t retry_initial_ms;
	int64_t retry_max_ms;

	/* the Platform API token: host secure memory, NUL-terminated */
	char *api_token;
	size_t api_token_len;

	CURL *curl;                  /* reused: keeps connections alive */

	/* the last error reported through turso_error(), kept so that a
	 * compensating action can report it again with its own outcome */
	int last_status;
	char last_native[32];
	char last_msg[1024];
} turso;

/* ------------------------------------------------------------------------ */
/* turso_config.c                                                            */
/* ------------------------------------------------------------------------ */

extern const envdb_config_key turso_config_keys[];

/** Read the configuration into `t` (whose host is set).  Reports through
 * host->error and returns ENVDB_ERR_CONFIG on a bad value. */
int turso_config_parse(turso *t, const envdb_config *cfg);
/** Release what turso_config_parse stored (safe on a partly filled t). */
void turso_config_free(turso *t);

/** Parse "250ms", "10s", "5m", "1h", "7d", "2w" or a bare number of seconds.
 * Returns 0 and sets *ms, or -1. */
int turso_parse_duration_ms(int64_t *ms, const char *s);
/** True when `s` is a token expiration Turso accepts: "never" or one or more
 * <digits><w|d|h|m|s> groups ("7d", "2w1d30m", "7d3h2m1s"). */
bool turso_expiration_valid(const char *s);
/** The number of seconds of a valid token expiration ("never": 0). */
int64_t turso_expiration_seconds(const char *s);
/** Format a number of seconds (> 0) as "XdYhZmWs" (zero parts omitted). */
void turso_format_expiration(char *out, size_t cap, int64_t seconds);

/* ------------------------------------------------------------------------ */
/* turso_names.c                                                             */
/* ------------------------------------------------------------------------ */

/** Derive "<prefix><32 lowercase hex>" from a UUID (with or without
 * dashes, any case).  Returns ENVDB_OK, or ENVDB_ERR_INVALID without
 * reporting (the caller names the environment). */
int turso_name_from_uuid(char *out, size_t cap, const char *prefix, const char *uuid);
/** Check a database name against Turso's rules and the hostname budget
 * (len(name) + 1 + len(org) <= 63).  Returns NULL when valid, else a static
 * description of the rule broken. */
const char *turso_name_problem(const char *name, const char *org);
/** True when `name` is one this plugin derives: prefix + 32 lowercase hex. */
bool turso_name_is_ours(const char *name, const char *prefix);

/* ------------------------------------------------------------------------ */
/* turso_http.c                                                              */
/* ------------------------------------------------------------------------ */

/** A response.  The body is NUL-terminated; in host secure memory of a fixed
 * capacity when the request was marked secret_response. */
typedef struct turso_resp {
	long status;              /* HTTP status, 0 when none was received */
	CURLcode curl_code;       /* CURLE_OK when a response arrived */
	char *body;
	size_t len;
	size_t cap;
	bool secure;              /* body is secure memory */
	bool overflow;            /* the body exceeded its capacity */
	int64_t retry_after_ms;   /* from Retry-After, or -1 */
	int attempts;             /* attempts made */
	char curl_error[CURL_ERROR_SIZE];
} turso_resp;

enum turso_retry_flags {
	/** Also retry HTTP 404 (a brand-new database is not served yet). */
	TURSO_RETRY_404 = 1u << 0,
	/** Retry nothing: one attempt; the caller runs its own loop. */
	TURSO_RETRY_NONE = 1u << 1,
	/** Also retry HTTP 401 once (a token minted an instant ago). */
	TURSO_RETRY_401_ONCE = 1u << 2
};

/** A request.  Every string is borrowed for the call. */
typedef struct turso_req {
	const char *what;          /* operation and object, for messages:
				      "create database env-…" */
	const char *method;        /* "GET", "POST", "DELETE" */
	const char *url;           /* never contains a secret */
	const char *body;          /* JSON, or NULL: POST then sends no body */
	const char *bearer;        /* secret for Authorization: Bearer, or NULL */
	size_t bearer_len;
	bool secret_response;      /* the answer carries a secret (a JWT) */
	unsigned retry;            /* turso_retry_flags */
	int max_attempts;          /* 0: the configured max_attempts */
	int64_t deadline_ms;       /* absolute, host monotonic clock */
	int64_t poll_max_delay_ms; /* cap of a 404-poll delay; 0: retry_max_ms */
} turso_req;

/**
 * Run a request with retries.  Network errors, 408, 429 and 5xx (plus
 * whatever req->retry adds) are retried with exponential backoff and
 * jitter, honouring Retry-After, while attempts remain and the deadline
 * allows the next attempt.
 *
 * Returns ENVDB_OK when a final HTTP answer arrived — whatever its status:
 * the caller judges resp->status.  Returns ENVDB_ERR_TIMEOUT (deadline) or
 * ENVDB_ERR_UNAVAILABLE (network failure on the last attempt) after
 * reporting through host->error; the report names req->what, the last
 * HTTP status and Turso's error text.  *resp must be released with
 * turso_resp_free() in every case.
 */
int turso_http(turso *t, const turso_req *req, turso_resp *resp);
void turso_resp_free(turso *t, turso_resp *resp);

/** The error text of a response: `error` (and `code`) of a JSON
 * {"error": …} body, else the start of a text body; redacted.  Written to
 * out (always NUL-terminated). */
void turso_error_text(turso *t, const turso_resp *resp, char *out, size_t cap);
/** Map an HTTP status to an envdb status. */
int turso_status_of_http(long status);
/** Report a failed answer: "<what>: HTTP <status>: <turso text>" with the
 * mapped status (or `status` when non-zero) and native code "HTTP <n>". */
int turso_fail(turso *t, int status, const char *what, const turso_resp *resp);
/** host->error with the message passed through turso_redact(). */
int turso_error(turso *t, int status, const char *native, const char *fmt, ...)
	ENVDB_PRINTF(4, 5);

/** Replace the API token and anything shaped like a JWT with "[redacted]"
 * in place. */
void turso_redact(const turso *t, char *msg);

/** The effective deadline of an operation starting now: the host's
 * deadline, bounded by operation_timeout. */
int64_t turso_deadline(turso *t);
/** Sleep up to `ms`, never past `deadline_ms`.  Returns ENVDB_ERR_TIMEOUT
 * when the deadline does not leave `ms`. */
int turso_sleep_until(turso *t, int64_t ms, int64_t deadline_ms);
/** The backoff before attempt `attempt` (1-based count of failures so far):
 * min(max, initial·2^(attempt-1)), jittered to [d/2, d], at least
 * retry_after_ms when that is >= 0. */
int64_t turso_backoff_ms(turso *t, int attempt, int64_t retry_after_ms, int64_t max_ms);

/** Percent-encode `s` into a new host->alloc string (NULL on ENOMEM). */
char *turso_urlencode(turso *t, const char *s);
/** host->alloc'd printf; NULL on failure. */
char *turso_strdup_printf(turso *t, const char *fmt, ...) ENVDB_PRINTF(2, 3);
char *turso_strdup(turso *t, const char *s);

/* ------------------------------------------------------------------------ */
/* turso_api.c — Platform API and Hrana over HTTP                             */
/* ------------------------------------------------------------------------ */

/** A database as the Platform API describes it; strings host->alloc'd. */
typedef struct turso_db {
	char *name;
	char *db_id;
	char *hostname;
	char *group;   /* NULL when the answer did not say */
} turso_db;

void turso_db_clear(turso *t, turso_db *db);

/** POST /databases with GET-before-re-POST.  A database of that name that
 * exists already is ENVDB_ERR_EXISTS, except when an earlier attempt of this
 * same call was ambiguous (network error, timeout, 408, 5xx) and the
 * database is in our group: then it is the one that attempt made, and it is
 * adopted (*adopted).  *maybe_created tells whether this call may have
 * created the database (so a later failure must delete it); it is false
 * after a definite refusal (401, 403, duplicate, another group's database). */
int turso_api_create(turso *t, const char *name, int64_t storage_limit_mb, int64_t deadline,
		     turso_db *out, bool *adopted, bool *maybe_created);
/** GET /databases/{name}.  ENVDB_ERR_NOT_FOUND (not reported) on 404. */
int turso_api_get(turso *t, const char *name, int64_t deadline, turso_db *out, bool report_404);
/** DELETE /databases/{name}; 404 is success.  Deletes by name alone: only
 * turso_api_delete_owned() calls it. */
int turso_api_delete(turso *t, const char *name, int64_t deadline);
/** Delete a database only when it is this environment's: GET it first (404:
 * already gone, success); it must be in the configured group and, when
 * `db_id` is given, have that DbId.  Otherwise it is kept and reported
 * (ENVDB_ERR_PERMISSION naming its group, ENVDB_ERR_STATE naming its DbId);
 * a GET that fails deletes nothing.  `op` starts the messages. */
int turso_api_delete_owned(turso *t, const char *op, const char *name, const char *db_id,
			   int64_t deadline);
/** GET /v1/auth/validate: ENVDB_OK, ENVDB_ERR_AUTH (401/403, reported), or
 * another status (reported) when the answer is not definite. */
int turso_api_validate(turso *t, int64_t deadline);
/** POST /databases/{name}/auth/tokens with no body; the JWT goes into
 * `secret` (host secure memory, NUL-terminated, *secret_len set). */
int turso_api_mint(turso *t, const char *name, const char *expiration, bool read_only,
		   unsigned retry, int64_t deadline, char **secret, size_t *secret_len);
/** GET /databases?group=…, following pagination; cb for each database of
 * ours (name pattern and group). */
int turso_api_list(turso *t, int64_t deadline, envdb_adapter_list_cb cb, void *cb_ctx);
/** POST <base>/v2/pipeline SELECT 1 with the JWT; closes the stream if the
 * server kept it open.  With wait_ready, 404 (and one 401) are polled until
 * `deadline`. */
int turso_hrana_select1(turso *t, const char *base_url, const char *dbname, const char *jwt,
			size_t jwt_len, bool wait_ready, int64_t deadline);
/** The data-plane base URL ("https://<Hostname>") of a database, from the
 * configuration and the hostname.  host->alloc'd. */
char *turso_data_plane_base(turso *t, const char *hostname);

#endif /* ENVDB_TURSO_H */
