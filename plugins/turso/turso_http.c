/*
 * plugins/turso/turso_http.c — the HTTP layer of the Turso adapter: one
 * request through libcurl with retries (network errors, 408, 429, 5xx),
 * exponential backoff with jitter, Retry-After, the operation deadline, and
 * error reports that name the operation, the HTTP status and Turso's error
 * text — and never a secret.
 *
 * Secrets: the bearer token is copied into host secure memory to build the
 * Authorization header; curl_slist_append() copies it into malloc'd memory,
 * which is wiped (sodium_memzero) after the request, before
 * curl_slist_free_all().  libcurl's own request buffer is beyond reach.  A
 * response marked secret_response is read into a fixed-size secure buffer
 * that is never reallocated, so the JWT it holds is never left in freed
 * ordinary memory.  Secrets never go into a URL, curl verbose output is
 * off, and every message passes through turso_redact().
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "turso.h"

#define TURSO_SECURE_BODY_CAP (64 * 1024)
#define TURSO_BODY_MAX (16 * 1024 * 1024)
#define TURSO_MSG_MAX 1024
#define TURSO_TEXT_MAX 300

/* ------------------------------------------------------------------------ */
/* Small string helpers                                                      */
/* ------------------------------------------------------------------------ */

char *turso_strdup(turso *t, const char *s)
{
	size_t n;
	char *p;

	if (s == NULL)
		return NULL;
	n = strlen(s);
	p = t->host->alloc(t->host->ctx, n + 1);
	if (p != NULL)
		memcpy(p, s, n + 1);
	return p;
}

char *turso_strdup_printf(turso *t, const char *fmt, ...)
{
	va_list ap;
	int n;
	char *p;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	p = t->host->alloc(t->host->ctx, (size_t)n + 1);
	if (p == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

char *turso_urlencode(turso *t, const char *s)
{
	static const char hexd[] = "0123456789ABCDEF";
	size_t n = strlen(s), i, o = 0;
	char *p = t->host->alloc(t->host->ctx, n * 3 + 1);

	if (p == NULL)
		return NULL;
	memset(p, 0, n * 3 + 1); /* no recycled heap residue in the unused tail */
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
			p[o++] = (char)c;
		} else {
			p[o++] = '%';
			p[o++] = hexd[c >> 4];
			p[o++] = hexd[c & 15];
		}
	}
	p[o] = '\0';
	return p;
}

/* ------------------------------------------------------------------------ */
/* Redaction and error reports                                               */
/* ------------------------------------------------------------------------ */

static const char REDACTED[] = "[redacted]";

/* Replace [start, start+len) of msg (NUL-terminated, fits in its own length
 * since REDACTED is shorter than any secret we redact, or shifted left). */
static void splice_redacted(char *msg, size_t start, size_t len)
{
	size_t rl = sizeof(REDACTED) - 1;
	size_t tail = strlen(msg + start + len);

	if (len >= rl) {
		memcpy(msg + start, REDACTED, rl);
		memmove(msg + start + rl, msg + start + len, tail + 1);
	} else {
		/* A short secret: overwrite with '*' rather than grow the string. */
		memset(msg + start, '*', len);
	}
}

static void redact_secret(char *msg, const char *secret, size_t len)
{
	char *p;

	if (secret == NULL || len < 4)
		return;
	while ((p = strstr(msg, secret)) != NULL && strlen(p) >= len &&
	       memcmp(p, secret, len) == 0)
		splice_redacted(msg, (size_t)(p - msg), len);
}

static bool b64url(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '=';
}

/* A JWT: eyJ<b64url>.<b64url>.<b64url> (header JSON starts with '{"'). */
static void redact_jwts(char *msg)
{
	char *p = msg;

	while ((p = strstr(p, "eyJ")) != NULL) {
		size_t i = 0;
		int dots = 0;
		while (p[i] != '\0' && (b64url(p[i]) || (p[i] == '.' && dots < 2))) {
			if (p[i] == '.')
				dots++;
			i++;
		}
		if (dots == 2 && i > 10) {
			splice_redacted(p, 0, i);
			p += sizeof(REDACTED) - 1;
		} else {
			p += 3;
		}
	}
}

void turso_redact(const turso *t, char *msg)
{
	if (msg == NULL)
		return;
	if (t != NULL && t->api_token != NULL)
		redact_secret(msg, t->api_token, t->api_token_len);
	redact_jwts(msg);
}

int turso_error(turso *t, int status, const char *native, const char *fmt, ...)
{
	char msg[TURSO_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	turso_redact(t, msg);
	t->last_status = status;
	snprintf(t->last_native, sizeof t->last_native, "%s", native ? native : "");
	snprintf(t->last_msg, sizeof t->last_msg, "%s", msg);
	return t->host->error(t->host->ctx, status, native, "%s", msg);
}

static void turso_log(turso *t, int level, const char *fmt, ...) ENVDB_PRINTF(3, 4);
static void turso_log(turso *t, int level, const char *fmt, ...)
{
	char msg[TURSO_MSG_MAX];
	va_list ap;

	if (t->host->log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	turso_redact(t, msg);
	t->host->log(t->host->ctx, level, "turso: %s", msg);
}

static void copy_printable(char *out, size_t cap, const char *s, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 1 < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		out[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	out[o] = '\0';
	/* trim trailing blanks */
	while (o > 0 && out[o - 1] == ' ')
		out[--o] = '\0';
}

void turso_error_text(turso *t, const turso_resp *resp, char *out, size_t cap)
{
	json_t *root = NULL, *err, *code;
	json_error_t jerr;

	out[0] = '\0';
	if (resp->secure && resp->status >= 200 && resp->status <= 299) {
		/* A successful answer that carries a secret: never quoted. */
		snprintf(out, cap, "(body withheld: it carries a token)");
		return;
	}
	if (resp->body == NULL || resp->len == 0) {
		snprintf(out, cap, "(empty body)");
		return;
	}
	root = json_loadb(resp->body, resp->len, 0, &jerr);
	if (root != NULL && json_is_object(root) && (err = json_object_get(root, "error")) != NULL) {
		char text[TURSO_TEXT_MAX];
		if (json_is_string(err)) {
			copy_printable(text, sizeof text, json_string_value(err),
				       json_string_length(err));
		} else {
			char *d = json_dumps(err, JSON_COMPACT);
			copy_printable(text, sizeof text, d ? d : "?", d ? strlen(d) : 1);
			free(d);
		}
		code = json_object_get(root, "code");
		if (json_is_string(code))
			snprintf(out, cap, "%s (code %s)", text, json_string_value(code));
		else
			snprintf(out, cap, "%s", text);
	} else if (root != NULL && json_is_object(root) &&
		   json_is_string(json_object_get(root, "message"))) {
		/* sqld's stream errors: {"message": …, "code": …} */
		copy_printable(out, cap, json_string_value(json_object_get(root, "message")),
			       strlen(json_string_value(json_object_get(root, "message"))));
	} else {
		copy_printable(out, cap, resp->body, resp->len < TURSO_TEXT_MAX ? resp->len
										  : TURSO_TEXT_MAX);
	}
	json_decref(root);
	turso_redact(t, out);
}

int turso_status_of_http(long status)
{
	switch (status) {
	case 400:
		return ENVDB_ERR_INVALID;
	case 401:
		return ENVDB_ERR_AUTH;
	case 402:
	case 403:
		return ENVDB_ERR_PERMISSION;
	case 404:
		return ENVDB_ERR_NOT_FOUND;
	case 409:
	case 422:
		return ENVDB_ERR_EXISTS;
	case 408:
	case 429:
		return ENVDB_ERR_UNAVAILABLE;
	default:
		return status >= 500 && status <= 599 ? ENVDB_ERR_UNAVAILABLE : ENVDB_ERR_GENERIC;
	}
}

int turso_fail(turso *t, int status, const char *what, const turso_resp *resp)
{
	char text[TURSO_MSG_MAX / 2];
	char native[32];

	turso_error_text(t, resp, text, sizeof text);
	snprintf(native, sizeof native, "HTTP %ld", resp->status);
	if (status == 0)
		status = turso_status_of_http(resp->status);
	if (resp->attempts > 1)
		return turso_error(t, status, native, "%s: HTTP %ld: %s (after %d attempts)", what,
				   resp->status, text, resp->attempts);
	return turso_error(t, status, native, "%s: HTTP %ld: %s", what, resp->status, text);
}

/* ------------------------------------------------------------------------ */
/* Time                                                                      */
/* ------------------------------------------------------------------------ */

int64_t turso_deadline(turso *t)
{
	int64_t now = t->host->now_ms(t->host->ctx);
	int64_t d = now + t->operation_timeout_ms;
	int64_t hd = t->host->deadline_ms ? t->host->deadline_ms(t->host->ctx) : 0;

	if (hd > 0 && hd < d)
		d = hd;
	return d;
}

int turso_sleep_until(turso *t, int64_t ms, int64_t deadline_ms)
{
	int64_t now = t->host->now_ms(t->host->ctx);
	struct timespec ts;

	if (now + ms >= deadline_ms)
		return ENVDB_ERR_TIMEOUT;
	if (ms <= 0)
		return ENVDB_OK;
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	return ENVDB_OK;
}

int64_t turso_backoff_ms(turso *t, int attempt, int64_t retry_after_ms, int64_t max_ms)
{
	int64_t d = t->retry_initial_ms, cap = max_ms > 0 ? max_ms : t->retry_max_ms;
	uint32_t r = 0;
	int i;

	for (i = 1; i < attempt && d < cap; i++)
		d *= 2;
	if (d > cap)
		d = cap;
	if (t->host->random != NULL)
		t->host->random(t->host->ctx, &r, sizeof r);
	else
		r = (uint32_t)rand();
	d = d / 2 + (int64_t)(r % (uint64_t)(d / 2 + 1));
	if (retry_after_ms >= 0 && d < retry_after_ms)
		d = retry_after_ms;
	return d;
}

/* ------------------------------------------------------------------------ */
/* libcurl callbacks                                                         */
/* ------------------------------------------------------------------------ */

typedef struct write_ctx {
	turso *t;
	turso_resp *resp;
} write_ctx;

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	write_ctx *w = userdata;
	turso_resp *r = w->resp;
	size_t n = size * nmemb;

	if (r->len + n + 1 > r->cap) {
		size_t ncap;
		char *nb;
		if (r->secure || r->len + n + 1 > TURSO_BODY_MAX) {
			r->overflow = true;
			return 0;
		}
		ncap = r->cap ? r->cap : 4096;
		while (ncap < r->len + n + 1)
			ncap *= 2;
		nb = w->t->host->realloc(w->t->host->ctx, r->body, ncap);
		if (nb == NULL) {
			r->overflow = true;
			return 0;
		}
		/* The grown part is recycled heap: libcurl frees its request
		 * buffers (Authorization header included) without wiping them.
		 * Never keep such residue in a block of ours. */
		memset(nb + r->len, 0, ncap - r->len);
		r->body = nb;
		r->cap = ncap;
	}
	memcpy(r->body + r->len, data, n);
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
	write_ctx *w = userdata;
	size_t n = size * nmemb;
	static const char ra[] = "retry-after:";

	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		w->resp->retry_after_ms = -1; /* a new response (e.g. after 100) */
	} else if (n > sizeof(ra) - 1 && strncasecmp(data, ra, sizeof(ra) - 1) == 0) {
		char val[64];
		size_t vl = n - (sizeof(ra) - 1), i = 0;
		const char *v = data + sizeof(ra) - 1;
		while (vl > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			vl--;
		}
		while (i + 1 < sizeof val && i < vl && v[i] != '\r' && v[i] != '\n') {
			val[i] = v[i];
			i++;
		}
		val[i] = '\0';
		if (i > 0 && isdigit((unsigned char)val[0])) {
			char *end = NULL;
			long long s = strtoll(val, &end, 10);
			if (end && *end == '\0' && s >= 0 && s < 86400 * 7)
				w->resp->retry_after_ms = (int64_t)s * 1000;
		} else if (i > 0) {
			time_t when = curl_getdate(val, NULL);
			if (when != (time_t)-1) {
				time_t now = time(NULL);
				w->resp->retry_after_ms =
					when > now ? (int64_t)(when - now) * 1000 : 0;
			}
		}
	}
	return n;
}

/* ------------------------------------------------------------------------ */
/* One attempt                                                               */
/* ------------------------------------------------------------------------ */

static int add_header(struct curl_slist **list, const char *h)
{
	struct curl_slist *n = curl_slist_append(*list, h);

	if (n == NULL)
		return -1;
	*list = n;
	return 0;
}

/* Perform one attempt.  Returns ENVDB_OK when curl ran (resp->curl_code
 * says how it went), or ENVDB_ERR_NOMEM. */
static int attempt_once(turso *t, const turso_req *req, turso_resp *resp, int64_t remaining_ms)
{
	const envdb_host *h = t->host;
	CURL *c = t->curl;
	struct curl_slist *hdrs = NULL;
	char *auth = NULL;
	size_t auth_len = 0;
	write_ctx w = { t, resp };
	int rc = ENVDB_OK;
	int64_t tmo, ctmo;

	resp->len = 0;
	if (resp->body)
		resp->body[0] = '\0';
	resp->overflow = false;
	resp->status = 0;
	resp->retry_after_ms = -1;
	resp->curl_error[0] = '\0';

	curl_easy_reset(c);

	if (add_header(&hdrs, "Accept: application/json") != 0 ||
	    add_header(&hdrs, "Expect:") != 0 ||
	    add_header(&hdrs, "User-Agent: envdb-turso/" TURSO_PLUGIN_VERSION) != 0 ||
	    (req->body != NULL && add_header(&hdrs, "Content-Type: application/json") != 0)) {
		rc = ENVDB_ERR_NOMEM;
		goto out;
	}
	if (req->bearer != NULL) {
		static const char pfx[] = "Authorization: Bearer ";
		auth_len = sizeof(pfx) - 1 + req->bearer_len + 1;
		auth = h->secure_alloc(h->ctx, auth_len);
		if (auth == NULL) {
			rc = ENVDB_ERR_NOMEM;
			goto out;
		}
		memcpy(auth, pfx, sizeof(pfx) - 1);
		memcpy(auth + sizeof(pfx) - 1, req->bearer, req->bearer_len);
		auth[auth_len - 1] = '\0';
		if (add_header(&hdrs, auth) != 0) {
			rc = ENVDB_ERR_NOMEM;
			goto out;
		}
	}

	tmo = t->request_timeout_ms < remaining_ms ? t->request_timeout_ms : remaining_ms;
	ctmo = t->connect_timeout_ms < tmo ? t->connect_timeout_ms : tmo;
	if (tmo < 1)
		tmo = 1;
	if (ctmo < 1)
		ctmo = 1;

	curl_easy_setopt(c, CURLOPT_URL, req->url);
	curl_easy_setopt(c, CURLOPT_VERBOSE, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 1L);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)tmo);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)ctmo);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &w);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &w);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, resp->curl_error);
	if (t->ca_file != NULL)
		curl_easy_setopt(c, CURLOPT_CAINFO, t->ca_file);
	if (strcmp(req->method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? req->body : "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(req->body ? strlen(req->body) : 0));
	} else if (strcmp(req->method, "GET") != 0) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
	}

	resp->curl_code = curl_easy_perform(c);
	if (resp->curl_code == CURLE_OK) {
		long st = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
		resp->status = st;
	} else if (resp->curl_error[0] == '\0') {
		snprintf(resp->curl_error, sizeof resp->curl_error, "%s",
			 curl_easy_strerror(resp->curl_code));
	}
out:
	/* Drop curl's references to the header list before it is freed. */
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
	/* curl_slist_append copied every header, the Authorization one with
	 * the bearer token: wipe the copies before they go back to malloc. */
	for (struct curl_slist *n = hdrs; n != NULL; n = n->next)
		if (n->data != NULL)
			sodium_memzero(n->data, strlen(n->data));
	curl_slist_free_all(hdrs);
	if (auth != NULL)
		h->secure_free(h->ctx, auth);
	return rc;
}

static bool curl_code_retryable(CURLcode cc)
{
	switch (cc) {
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_OUT_OF_MEMORY:
	case CURLE_WRITE_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_BAD_FUNCTION_ARGUMENT:
	case CURLE_TOO_MANY_REDIRECTS:
	case CURLE_LOGIN_DENIED:
		return false;
	default:
		return true;
	}
}

static bool status_retryable(long st, unsigned flags, bool *used_401)
{
	if (st == 408 || st == 429 || (st >= 500 && st <= 599))
		return true;
	if (st == 404 && (flags & TURSO_RETRY_404))
		return true;
	if (st == 401 && (flags & TURSO_RETRY_401_ONCE) && !*used_401) {
		*used_401 = true;
		return true;
	}
	return false;
}

/* "HTTP 429: too many requests" or the curl error, for messages. */
static void last_answer(turso *t, const turso_resp *resp, char *out, size_t cap)
{
	if (resp->curl_code != CURLE_OK) {
		char e[CURL_ERROR_SIZE];
		snprintf(e, sizeof e, "%s", resp->curl_error);
		turso_redact(t, e);
		if (resp->overflow)
			snprintf(out, cap, "response body too large");
		else
			snprintf(out, cap, "network error: %s", e);
	} else {
		char text[TURSO_TEXT_MAX];
		turso_error_text(t, resp, text, sizeof text);
		snprintf(out, cap, "HTTP %ld: %s", resp->status, text);
	}
}

int turso_http(turso *t, const turso_req *req, turso_resp *resp)
{
	const envdb_host *h = t->host;
	int max = req->max_attempts > 0 ? req->max_attempts : t->max_attempts;
	/* A 404 poll (TURSO_RETRY_404) may run long, bounded by the deadline;
	 * every other failure still counts against max_attempts. */
	int failures = 0;
	bool used_401 = false;
	int rc;

	memset(resp, 0, sizeof *resp);
	resp->retry_after_ms = -1;
	if (req->retry & TURSO_RETRY_NONE)
		max = 1;
	if (req->secret_response) {
		resp->body = h->secure_alloc(h->ctx, TURSO_SECURE_BODY_CAP);
		if (resp->body == NULL)
			return turso_error(t, ENVDB_ERR_NOMEM, NULL,
					   "%s: cannot allocate secure memory", req->what);
		resp->cap = TURSO_SECURE_BODY_CAP;
		resp->secure = true;
		resp->body[0] = '\0';
	}

	for (;;) {
		int64_t now = h->now_ms(h->ctx), delay;
		bool retry;
		char last[TURSO_MSG_MAX / 2];

		if (now >= req->deadline_ms) {
			if (resp->attempts == 0)
				return turso_error(t, ENVDB_ERR_TIMEOUT, NULL,
						   "%s: deadline reached before the first attempt",
						   req->what);
			last_answer(t, resp, last, sizeof last);
			return turso_error(t, ENVDB_ERR_TIMEOUT,
					   resp->status ? NULL : "timeout",
					   "%s: deadline reached after %d attempt%s (last: %s)",
					   req->what, resp->attempts, resp->attempts == 1 ? "" : "s",
					   last);
		}
		resp->attempts++;
		rc = attempt_once(t, req, resp, req->deadline_ms - now);
		if (rc != ENVDB_OK)
			return turso_error(t, rc, NULL, "%s: out of memory", req->what);

		if (resp->curl_code != CURLE_OK)
			retry = curl_code_retryable(resp->curl_code) && !resp->overflow;
		else
			retry = status_retryable(resp->status, req->retry, &used_401);

		if (retry && !(resp->curl_code == CURLE_OK && resp->status == 404))
			failures++;
		if (!retry || resp->attempts >= max || failures >= t->max_attempts) {
			if (resp->curl_code == CURLE_OK)
				return ENVDB_OK;
			last_answer(t, resp, last, sizeof last);
			if (resp->curl_code == CURLE_OPERATION_TIMEDOUT &&
			    h->now_ms(h->ctx) >= req->deadline_ms)
				return turso_error(t, ENVDB_ERR_TIMEOUT, "timeout",
						   "%s: deadline reached after %d attempt%s (%s)",
						   req->what, resp->attempts,
						   resp->attempts == 1 ? "" : "s", last);
			return turso_error(t, resp->overflow ? ENVDB_ERR_GENERIC
							     : ENVDB_ERR_UNAVAILABLE,
					   "network", "%s: %s (after %d attempt%s)", req->what,
					   last, resp->attempts, resp->attempts == 1 ? "" : "s");
		}

		delay = turso_backoff_ms(t, resp->attempts, resp->retry_after_ms,
					 req->poll_max_delay_ms);
		last_answer(t, resp, last, sizeof last);
		if (h->now_ms(h->ctx) + delay >= req->deadline_ms) {
			char native[32];
			snprintf(native, sizeof native, "HTTP %ld", resp->status);
			return turso_error(t, ENVDB_ERR_TIMEOUT,
					   resp->curl_code == CURLE_OK ? native : "timeout",
					   "%s: deadline reached after %d attempt%s (last: %s; next "
					   "attempt not before %lldms)",
					   req->what, resp->attempts, resp->attempts == 1 ? "" : "s",
					   last, (long long)delay);
		}
		turso_log(t, resp->status == 404 ? ENVDB_LOG_DEBUG : ENVDB_LOG_INFO,
			  "%s: %s; retrying in %lldms (attempt %d of %d)", req->what, last,
			  (long long)delay, resp->attempts + 1, max);
		turso_sleep_until(t, delay, req->deadline_ms);
	}
}

void turso_resp_free(turso *t, turso_resp *resp)
{
	if (resp->body != NULL) {
		if (resp->secure) {
			/* secure_free zeroes; also wipe now in case of reuse. */
			memset(resp->body, 0, resp->cap);
			t->host->secure_free(t->host->ctx, resp->body);
		} else {
			t->host->free(t->host->ctx, resp->body);
		}
	}
	memset(resp, 0, sizeof *resp);
}
