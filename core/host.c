/*
 * core/host.c — the host side of the plugin boundary: the services table
 * every plugin receives (envdb_host) and every call the core makes into a
 * plugin (envdbi_adapter_*, envdbi_encryptor_*).
 *
 * Each call into a plugin:
 *  - answers ENVDB_ERR_NOT_SUPPORTED itself for a NULL slot;
 *  - runs under a `struct envdb_call` (ABI 1.1: host->call_current), which
 *    carries the operation's deadline, its cancellation flag and its error
 *    report, so a plugin's worker threads report errors and see deadlines
 *    through it; the thread's own deadline (host->deadline_ms, ABI 1.0) is
 *    set too for the duration — the per-call timeout, or an earlier
 *    deadline already set;
 *  - serializes on the instance unless the plugin declared itself
 *    thread-safe;
 *  - speaks the envdb_buffer protocol: retries ENVDB_ERR_BUFFER_TOO_SMALL
 *    with the size the plugin asked for (bounded), and checks that what
 *    came back fits and is terminated;
 *  - on failure leaves the plugin's own report (host->error on the calling
 *    thread, or call_error from any thread) in the last error, prefixed
 *    with "plugin NAME: ", or says which operation failed when the plugin
 *    reported nothing (or an empty report, or a status that is not one);
 *  - treats a call that returns after its deadline as ENVDB_ERR_TIMEOUT and
 *    discards what it returned (every operation may be retried);
 *  - refuses outputs whose buffer descriptor the plugin changed, that do
 *    not fit, that hold a NUL inside text, or that are empty where a value
 *    is required (a database name, a URL, a secret).
 * Secrets travel in host secure memory and come back as envdbi_secret.
 * The secrets of the call in progress (handed to the plugin, or written by
 * it into a secure output buffer) are redacted from everything the plugin
 * reports or logs during the call, and from the final last error, so a
 * careless plugin cannot leak them through a message.
 */
#include "config.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "internal.h"
#include "plugin_priv.h"

#define OUTPUT_MAX (16u * 1024u * 1024u) /* largest buffer a plugin may ask for */
#define KEY_ID_CAP 256
#define KEY_GENERATE_CAP 4096
#define RETRIES 4
#define REPORT_MAX (64u * 1024u) /* a plugin's message is formatted up to this */
#define REDACT_MIN 4             /* shorter "secrets" are not searched for */
#define REDACTED "[redacted]"
#define CALL_SECRETS 2
#define REPORT_KEEP 1536        /* what a call keeps of a report (> ENVDB_MESSAGE_MAX) */

/* ------------------------------------------------------------------------ */
/* Clocks and deadlines                                                      */
/* ------------------------------------------------------------------------ */

static _Atomic int64_t call_timeout_ms = 30000;
static _Thread_local int64_t tls_deadline_ms;

static int64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void envdbi_host_set_call_timeout_ms(int64_t ms)
{
	atomic_store(&call_timeout_ms, ms < 0 ? 0 : ms);
}

int64_t envdbi_host_call_timeout_ms(void)
{
	return atomic_load(&call_timeout_ms);
}

/* ------------------------------------------------------------------------ */
/* The call in progress and its secrets                                      */
/* ------------------------------------------------------------------------ */

typedef struct hbuf hbuf;

/* The host's record of one operation, and the envdb_call a plugin may hand
 * to its threads (ABI 1.1).  It lives on the calling thread's stack from
 * call_begin to call_end.  The plugin's error report is kept here, under
 * `mu`, whichever thread makes it; call_end copies it into the calling
 * thread's last error. */
struct envdb_call {
	envdbi_plugin *p;
	const char *op;
	int64_t saved_deadline;
	int64_t deadline; /* this call's own, 0: none */
	int64_t timeout;  /* the per-call timeout it was given, 0: none */
	bool own_deadline; /* the deadline is this call's timeout, not an outer one */
	unsigned generation;
	bool locked;
	/* secrets handed to the plugin (data, len) ... */
	const char *in_secret[CALL_SECRETS];
	size_t in_secret_len[CALL_SECRETS];
	/* ... and secure output buffers it may write one into */
	const hbuf *out_secret[CALL_SECRETS];
	struct envdb_call *outer; /* the call this one runs inside, if any */
	/* the operation's error report */
	pthread_mutex_t mu;
	bool reported;
	int status;
	char message[REPORT_KEEP];
	char native[64];
	atomic_bool ended; /* call_end ran: the operation is over */
};
typedef struct envdb_call call;

/* The calls in progress on this thread (innermost first). */
static _Thread_local call *tls_call;

/* The plugin and operation of the call most recently begun in the process,
 * for a crash report from a thread that has no call of its own (a plugin's
 * worker).  Plain pointers to static or plugin-lifetime strings. */
static _Atomic(const char *) last_plugin;
static _Atomic(const char *) last_op;

/* Replace every occurrence of the `len` bytes at `sec` in the NUL-terminated
 * text `msg` (capacity `cap`) with REDACTED. */
static void redact_one(char *msg, size_t cap, const char *sec, size_t len)
{
	size_t mlen, i = 0, o = 0, rl = strlen(REDACTED);
	char *out;

	if (sec == NULL || len < REDACT_MIN || msg == NULL)
		return;
	mlen = strlen(msg);
	if (mlen < len || memmem(msg, mlen, sec, len) == NULL)
		return;
	out = malloc(cap);
	if (out == NULL) {
		/* cannot rewrite: drop the message rather than keep a secret */
		snprintf(msg, cap, "%s", "(message withheld: it contained a secret)");
		return;
	}
	while (i < mlen && o + 1 < cap) {
		if (mlen - i >= len && memcmp(msg + i, sec, len) == 0) {
			size_t k = rl < cap - 1 - o ? rl : cap - 1 - o;

			memcpy(out + o, REDACTED, k);
			o += k;
			i += len;
			continue;
		}
		out[o++] = msg[i++];
	}
	out[o] = '\0';
	memcpy(msg, out, o + 1);
	/* the redacted text may be shorter: wipe what the secret left after it */
	if (mlen > o)
		sodium_memzero(msg + o + 1, mlen - o < cap - o - 1 ? mlen - o : cap - o - 1);
	sodium_memzero(out, o + 1);
	free(out);
}

static void redact_hbuf(char *msg, size_t cap, const hbuf *h);

/* Redact the secrets of call `from` and every call it runs inside. */
static void redact_secrets_of(const call *from, char *msg, size_t cap)
{
	const call *c;
	size_t i;

	for (c = from; c != NULL; c = c->outer)
		for (i = 0; i < CALL_SECRETS; i++) {
			redact_one(msg, cap, c->in_secret[i], c->in_secret_len[i]);
			if (c->out_secret[i] != NULL)
				redact_hbuf(msg, cap, c->out_secret[i]);
		}
}

/* Redact the secrets of every call in progress on this thread from `msg`. */
static void redact_call_secrets(char *msg, size_t cap)
{
	redact_secrets_of(tls_call, msg, cap);
}

/* ------------------------------------------------------------------------ */
/* Host services                                                             */
/* ------------------------------------------------------------------------ */

static void *svc_alloc(envdb_host_ctx *ctx, size_t size)
{
	(void)ctx;
	return malloc(size ? size : 1);
}

static void *svc_realloc(envdb_host_ctx *ctx, void *ptr, size_t size)
{
	(void)ctx;
	return realloc(ptr, size ? size : 1);
}

static void svc_free(envdb_host_ctx *ctx, void *ptr)
{
	(void)ctx;
	free(ptr);
}

static void *svc_secure_alloc(envdb_host_ctx *ctx, size_t size)
{
	(void)ctx;
	return envdbi_secure_alloc(size);
}

static void svc_secure_free(envdb_host_ctx *ctx, void *ptr)
{
	(void)ctx;
	envdbi_secure_free(ptr);
}

/* Free a REPORT_MAX buffer that held a plugin's message: it was formatted
 * before redaction, so wipe it all first. */
static void report_free(char *msg)
{
	sodium_memzero(msg, REPORT_MAX);
	free(msg);
}

static void svc_vlog(envdb_host_ctx *ctx, int level, const char *fmt, va_list ap)
    ENVDB_PRINTF(3, 0);

static void svc_vlog(envdb_host_ctx *ctx, int level, const char *fmt, va_list ap)
{
	char *msg = malloc(REPORT_MAX);

	if (msg == NULL || fmt == NULL) {
		free(msg);
		return;
	}
	vsnprintf(msg, REPORT_MAX, fmt, ap);
	redact_call_secrets(msg, REPORT_MAX);
	envdbi_log(level, "plugin %s: %s", ctx && ctx->plugin ? ctx->plugin->name : "?", msg);
	report_free(msg);
}

static void svc_log(envdb_host_ctx *ctx, int level, const char *fmt, ...) ENVDB_PRINTF(3, 4);

static void svc_log(envdb_host_ctx *ctx, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	svc_vlog(ctx, level, fmt, ap);
	va_end(ap);
}

/* Keep a report: for call `c` (any thread; the last report wins) or, with
 * `c` NULL (host->error on a thread with no call, a 1.0 plugin's own
 * thread), in the thread's last error as ABI 1.0 had it.  Formatted in full
 * (up to REPORT_MAX) and redacted before it is cut to what is kept, so no
 * part of a secret survives at the cut. */
static int report_v(call *c, int status, const char *native_code, const char *fmt, va_list ap)
    ENVDB_PRINTF(4, 0);

static int report_v(call *c, int status, const char *native_code, const char *fmt, va_list ap)
{
	static const char lost[] = "(the plugin's report was lost: out of memory)";
	const call *from = c != NULL ? c : tls_call;
	char native[64];
	char *msg;

	if (status >= 0)
		status = ENVDB_ERR_GENERIC; /* an error report always carries an error */
	msg = malloc(REPORT_MAX);
	if (msg != NULL) {
		msg[0] = '\0';
		if (fmt != NULL)
			vsnprintf(msg, REPORT_MAX, fmt, ap);
		redact_secrets_of(from, msg, REPORT_MAX);
	}
	snprintf(native, sizeof(native), "%s", native_code ? native_code : "");
	redact_secrets_of(from, native, sizeof(native));
	if (c == NULL) {
		envdbi_error(status, native[0] ? native : NULL, "%s", msg ? msg : lost);
	} else {
		pthread_mutex_lock(&c->mu);
		c->reported = true;
		c->status = status;
		snprintf(c->message, sizeof(c->message), "%s", msg ? msg : lost);
		snprintf(c->native, sizeof(c->native), "%s", native);
		pthread_mutex_unlock(&c->mu);
	}
	if (msg != NULL)
		report_free(msg);
	sodium_memzero(native, sizeof(native));
	return status;
}

static int call_report(call *c, int status, const char *native_code, const char *fmt, ...)
    ENVDB_PRINTF(4, 5);

static int call_report(call *c, int status, const char *native_code, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = report_v(c, status, native_code, fmt, ap);
	va_end(ap);
	return rc;
}

static int svc_verror(envdb_host_ctx *ctx, int status, const char *native_code, const char *fmt,
		      va_list ap) ENVDB_PRINTF(4, 0);

static int svc_verror(envdb_host_ctx *ctx, int status, const char *native_code, const char *fmt,
		      va_list ap)
{
	(void)ctx;
	/* On a thread running an operation the report belongs to it. */
	return report_v(tls_call, status, native_code, fmt, ap);
}

static int svc_error(envdb_host_ctx *ctx, int status, const char *native_code, const char *fmt, ...)
    ENVDB_PRINTF(4, 5);

static int svc_error(envdb_host_ctx *ctx, int status, const char *native_code, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = svc_verror(ctx, status, native_code, fmt, ap);
	va_end(ap);
	return rc;
}

/* ABI 1.1: the explicit call context. */

static envdb_call *svc_call_current(envdb_host_ctx *ctx)
{
	(void)ctx;
	return tls_call;
}

static int svc_call_verror(envdb_call *c, int status, const char *native_code, const char *fmt,
			   va_list ap) ENVDB_PRINTF(4, 0);

static int svc_call_verror(envdb_call *c, int status, const char *native_code, const char *fmt,
			   va_list ap)
{
	/* NULL, outside an operation: the thread's last error */
	return report_v(c, status, native_code, fmt, ap);
}

static int svc_call_error(envdb_call *c, int status, const char *native_code, const char *fmt,
			  ...) ENVDB_PRINTF(4, 5);

static int svc_call_error(envdb_call *c, int status, const char *native_code, const char *fmt,
			  ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = svc_call_verror(c, status, native_code, fmt, ap);
	va_end(ap);
	return rc;
}

static int64_t svc_call_deadline_ms(envdb_call *c)
{
	return c ? c->deadline : 0;
}

static int svc_call_cancelled(envdb_call *c)
{
	if (c == NULL)
		return 0;
	if (atomic_load(&c->ended))
		return 1;
	return c->deadline > 0 && monotonic_ms() > c->deadline;
}

/* Read a declared secret again from where the manifest says it lives. */
static int svc_config_secret(envdb_host_ctx *ctx, const char *key, envdb_buffer *value)
{
	envdbi_plugin *p = ctx ? ctx->plugin : NULL;
	envdbi_secret *sec = NULL;
	int rc;

	if (p == NULL || key == NULL || value == NULL)
		return ENVDB_ERR_MISUSE;
	rc = envdbi_plugin_secret_read(p, key, &sec);
	if (rc != ENVDB_OK) {
		/* the host's report, for the operation that asked */
		const envdb_error *e = envdb_error_last();
		if (tls_call != NULL)
			call_report(tls_call, rc, NULL, "config_secret %s: %s", key, e->message);
		return rc;
	}
	rc = envdb_buffer_set(value, sec->data, sec->len);
	envdbi_secret_free(sec);
	return rc;
}

static int64_t svc_deadline_ms(envdb_host_ctx *ctx)
{
	(void)ctx;
	return tls_deadline_ms;
}

static int64_t svc_now_ms(envdb_host_ctx *ctx)
{
	(void)ctx;
	return monotonic_ms();
}

static int64_t svc_wall_s(envdb_host_ctx *ctx)
{
	(void)ctx;
	return (int64_t)time(NULL);
}

static int svc_random(envdb_host_ctx *ctx, void *buf, size_t len)
{
	(void)ctx;
	randombytes_buf(buf, len);
	return ENVDB_OK;
}

static const char *svc_deployment_id(envdb_host_ctx *ctx)
{
	if (ctx == NULL || ctx->plugin == NULL || ctx->plugin->deployment_id[0] == '\0')
		return NULL;
	return ctx->plugin->deployment_id;
}

void envdbi_host_prepare(envdbi_plugin *p)
{
	p->hctx.plugin = p;
	memset(&p->host, 0, sizeof(p->host));
	p->host.struct_size = sizeof(p->host);
	p->host.abi_major = ENVDB_ABI_MAJOR;
	p->host.abi_minor = ENVDB_ABI_MINOR;
	p->host.ctx = &p->hctx;
	p->host.alloc = svc_alloc;
	p->host.realloc = svc_realloc;
	p->host.free = svc_free;
	p->host.secure_alloc = svc_secure_alloc;
	p->host.secure_free = svc_secure_free;
	p->host.log = svc_log;
	p->host.error = svc_error;
	p->host.deadline_ms = svc_deadline_ms;
	p->host.now_ms = svc_now_ms;
	p->host.wall_s = svc_wall_s;
	p->host.random = svc_random;
	p->host.call_current = svc_call_current;
	p->host.call_error = svc_call_error;
	p->host.call_verror = svc_call_verror;
	p->host.call_deadline_ms = svc_call_deadline_ms;
	p->host.call_cancelled = svc_call_cancelled;
	p->host.vlog = svc_vlog;
	p->host.verror = svc_verror;
	p->host.config_secret = svc_config_secret;
	p->host.deployment_id = svc_deployment_id;
}

void envdbi_plugin_set_deployment(envdbi_plugin *p, const char *deployment_id)
{
	snprintf(p->deployment_id, sizeof(p->deployment_id), "%s",
		 deployment_id != NULL && strlen(deployment_id) == 36 ? deployment_id : "");
}

/* The db_ref a plugin receives: the caller's, with the deployment id of the
 * context filled in where the caller left it NULL, so that no call site of
 * the core can forget it (ENVDB_ADAPTER_CAP_DEPLOYMENT). */
static const envdb_db_ref *ref_of(envdb_db_ref *copy, const envdbi_plugin *p,
				  const envdb_db_ref *db)
{
	if (db == NULL || db->struct_size < sizeof(*db) || db->deployment_id != NULL ||
	    p->deployment_id[0] == '\0')
		return db;
	*copy = *db;
	copy->deployment_id = p->deployment_id;
	return copy;
}

/* ------------------------------------------------------------------------ */
/* Calls                                                                     */
/* ------------------------------------------------------------------------ */

static void call_begin(call *c, envdbi_plugin *p, const char *op, bool serialize)
{
	int64_t timeout = p->call_timeout_ms > 0 ? p->call_timeout_ms : envdbi_host_call_timeout_ms();

	memset(c, 0, sizeof(*c));
	c->p = p;
	c->op = op;
	c->saved_deadline = tls_deadline_ms;
	c->timeout = timeout;
	if (timeout > 0) {
		int64_t mine = monotonic_ms() + timeout;
		if (tls_deadline_ms == 0 || mine < tls_deadline_ms) {
			tls_deadline_ms = mine;
			c->own_deadline = true;
		}
	}
	c->deadline = tls_deadline_ms;
	c->locked = serialize;
	if (serialize)
		pthread_mutex_lock(&p->lock);
	c->generation = envdbi_error_generation();
	pthread_mutex_init(&c->mu, NULL);
	atomic_init(&c->ended, false);
	c->outer = tls_call;
	tls_call = c;
	atomic_store(&last_plugin, p->name);
	atomic_store(&last_op, op);
}

/* The operation of call `c` returned: leave this thread's call and deadline,
 * and move the report the plugin kept in the call (from whichever thread)
 * into this thread's last error.  Returns true when the plugin (or the host
 * on its behalf) reported anything during the call. */
static bool call_leave(call *c)
{
	bool kept;

	tls_deadline_ms = c->saved_deadline;
	tls_call = c->outer;
	pthread_mutex_lock(&c->mu);
	atomic_store(&c->ended, true);
	kept = c->reported;
	if (kept)
		envdbi_error(c->status, c->native[0] ? c->native : NULL, "%s", c->message);
	pthread_mutex_unlock(&c->mu);
	pthread_mutex_destroy(&c->mu);
	return kept || envdbi_error_generation() != c->generation;
}

/* Secrets of call `c` (before the plugin runs): one handed in, one secure
 * output buffer. */
static void call_secret_in(call *c, const void *data, size_t len)
{
	size_t i;

	for (i = 0; i < CALL_SECRETS; i++)
		if (c->in_secret[i] == NULL) {
			c->in_secret[i] = data;
			c->in_secret_len[i] = len;
			return;
		}
}

static void call_secret_out(call *c, const hbuf *h)
{
	size_t i;

	for (i = 0; i < CALL_SECRETS; i++)
		if (c->out_secret[i] == NULL) {
			c->out_secret[i] = h;
			return;
		}
}

/* Which deadline a call that timed out had, for its message. */
static void deadline_note(char *out, size_t cap, const call *c)
{
	if (!c->own_deadline)
		snprintf(out, cap, "the deadline of the operation that made the call");
	else if (c->p->call_timeout_ms > 0)
		snprintf(out, cap, "call_timeout_ms %lld, set in the manifest",
			 (long long)c->timeout);
	else
		snprintf(out, cap,
			 "call_timeout_ms %lld, the default; set call_timeout_ms on the plugin "
			 "in the manifest",
			 (long long)c->timeout);
}

/* Finish a call that returned `rc`; on failure make the last error say
 * "plugin NAME: <the plugin's report, or which operation failed>". */
static int call_end(call *c, int rc)
{
	char msg[REPORT_KEEP], native[64], late[320] = "", which[160] = "";
	int64_t now = monotonic_ms();
	const envdb_error *e;
	bool reported;
	int raw = rc;

	if (c->locked)
		pthread_mutex_unlock(&c->p->lock);
	reported = call_leave(c);
	/* Past its deadline the result is discarded, whatever it was. */
	if (c->deadline > 0 && now > c->deadline && rc != ENVDB_ERR_BUFFER_TOO_SMALL) {
		deadline_note(which, sizeof(which), c);
		if (rc == ENVDB_OK || !reported)
			return envdbi_error(ENVDB_ERR_TIMEOUT, NULL,
					    "plugin %s: %s did not finish within its deadline (%s): "
					    "it returned %s %lld ms after it; its result is discarded",
					    c->p->name, c->op, which, envdb_status_str(rc),
					    (long long)(now - c->deadline));
		snprintf(late, sizeof(late), " (returned %lld ms after its deadline: %s)",
			 (long long)(now - c->deadline), which);
		rc = ENVDB_ERR_TIMEOUT;
	} else if (rc == ENVDB_ERR_TIMEOUT && c->deadline > 0) {
		/* The plugin gave up, at the host's deadline or at one of its
		 * own: say which deadline the host had given the call. */
		deadline_note(which, sizeof(which), c);
		snprintf(late, sizeof(late), " (the host's deadline for %s: %s)", c->op, which);
	}
	if (rc == ENVDB_OK)
		return ENVDB_OK;
	/* A status that is not an envdb_status is a generic error. */
	if (rc > 0 || !envdbi_status_known(rc))
		rc = ENVDB_ERR_GENERIC;
	if (!reported)
		return envdbi_error(rc, NULL, "plugin %s: %s failed (%s, status %d) without a report",
				    c->p->name, c->op, envdb_status_str(rc), raw);
	e = envdb_error_last();
	if (e->message == NULL || e->message[0] == '\0')
		return envdbi_error(rc, NULL,
				    "plugin %s: %s failed (%s, status %d) with an empty report%s",
				    c->p->name, c->op, envdb_status_str(rc), raw, late);
	snprintf(msg, sizeof(msg), "%s", e->message);
	snprintf(native, sizeof(native), "%s", e->native_code ? e->native_code : "");
	/* The plugin may have written a secret after it reported. */
	redact_secrets_of(c, msg, sizeof(msg));
	redact_secrets_of(c, native, sizeof(native));
	rc = envdbi_error(rc, native[0] ? native : NULL, "plugin %s: %s%s", c->p->name, msg, late);
	sodium_memzero(msg, sizeof(msg));
	sodium_memzero(native, sizeof(native));
	return rc;
}

static bool plugin_ready(envdbi_plugin *p, uint32_t kind, const char *op, int *rc)
{
	if (p == NULL || p->kind != kind) {
		*rc = envdbi_error(ENVDB_ERR_MISUSE, NULL, "%s: %s", op,
				   p == NULL ? "no plugin given" : "the plugin is of another kind");
		return false;
	}
	if (!p->initialized) {
		*rc = envdbi_error(ENVDB_ERR_STATE, NULL,
				   "plugin %s: %s: the plugin is not initialised", p->name, op);
		return false;
	}
	return true;
}

static int not_supported(const envdbi_plugin *p, const char *op)
{
	return envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL, "plugin %s: %s is not supported",
			    p->name, op);
}

/* init, fini and the module hooks run one at a time in the process. */
static pthread_mutex_t life_lock = PTHREAD_MUTEX_INITIALIZER;

/* Run a lifecycle function of the plugin (init or module_load) under a
 * call; on failure the last error reads "WHAT failed: <the report>". */
static int lifecycle_end(call *c, int rc, const char *what)
{
	char msg[REPORT_KEEP], native[64];
	bool reported = call_leave(c);

	if (rc == ENVDB_OK)
		return ENVDB_OK;
	if (rc > 0 || !envdbi_status_known(rc))
		rc = ENVDB_ERR_GENERIC;
	if (!reported)
		return envdbi_error(rc, NULL, "%s failed (%s) without a report", what,
				    envdb_status_str(rc));
	snprintf(msg, sizeof(msg), "%s", envdb_error_last()->message);
	snprintf(native, sizeof(native), "%s",
		 envdb_error_last()->native_code ? envdb_error_last()->native_code : "");
	redact_secrets_of(c, msg, sizeof(msg));
	return envdbi_error(rc, native[0] ? native : NULL, "%s failed: %s", what, msg);
}

int envdbi_host_init(envdbi_plugin *p, const envdb_config *cfg)
{
	call c;
	int rc;

	pthread_mutex_lock(&life_lock);
	call_begin(&c, p, "init", false);
	p->instance = NULL;
	rc = p->desc.init(&p->instance, &p->host, cfg);
	if (rc == ENVDB_OK)
		p->initialized = true;
	rc = lifecycle_end(&c, rc, "init");
	pthread_mutex_unlock(&life_lock);
	return rc;
}

void envdbi_host_fini(envdbi_plugin *p)
{
	call c;

	if (p == NULL || !p->initialized)
		return;
	pthread_mutex_lock(&life_lock);
	call_begin(&c, p, "fini", false);
	p->desc.fini(p->instance);
	call_leave(&c);
	p->initialized = false;
	p->instance = NULL;
	pthread_mutex_unlock(&life_lock);
}

int envdbi_host_module_load(envdbi_plugin *p)
{
	call c;
	int rc;

	if (p->desc.module_load == NULL)
		return ENVDB_OK;
	pthread_mutex_lock(&life_lock);
	call_begin(&c, p, "module_load", false);
	rc = lifecycle_end(&c, p->desc.module_load(&p->host), "module_load");
	pthread_mutex_unlock(&life_lock);
	return rc;
}

void envdbi_host_module_unload(envdbi_plugin *p)
{
	call c;

	if (p->desc.module_unload == NULL)
		return;
	pthread_mutex_lock(&life_lock);
	call_begin(&c, p, "module_unload", false);
	p->desc.module_unload();
	call_leave(&c);
	pthread_mutex_unlock(&life_lock);
}

bool envdbi_host_current_call(const char **plugin, const char **op)
{
	const call *c = tls_call;

	if (c != NULL) {
		*plugin = c->p->name;
		*op = c->op;
		return true;
	}
	*plugin = atomic_load(&last_plugin);
	*op = atomic_load(&last_op);
	return false;
}

/* ------------------------------------------------------------------------ */
/* Output buffers                                                            */
/* ------------------------------------------------------------------------ */

/* An output buffer: the descriptor handed to the plugin, and the host's own
 * record of it (a plugin that rewrites the descriptor cannot make the host
 * free or read memory that is not the buffer). */
struct hbuf {
	envdb_buffer b;
	bool secure;
	char *data;  /* what b.data must still be */
	size_t cap;  /* what b.cap must still be */
};

static int hbuf_init(hbuf *h, size_t cap, bool secure)
{
	memset(h, 0, sizeof(*h));
	h->secure = secure;
	h->b.struct_size = sizeof(h->b);
	h->data = secure ? envdbi_secure_alloc(cap) : malloc(cap);
	if (h->data == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "out of %smemory for a %zu-byte buffer",
				    secure ? "secure " : "", cap);
	/* zeroed, so what a plugin wrote can be told from what it did not */
	memset(h->data, 0, cap);
	h->b.data = h->data;
	h->cap = h->b.cap = cap;
	return ENVDB_OK;
}

static void hbuf_free(hbuf *h)
{
	if (h->data == NULL)
		return;
	if (h->secure)
		envdbi_secure_free(h->data);
	else
		free(h->data);
	h->data = h->b.data = NULL;
	h->cap = h->b.cap = 0;
}

/* True when the plugin left the descriptor as the host made it. */
static bool hbuf_intact(const hbuf *h)
{
	return h->b.struct_size == sizeof(h->b) && h->b.data == h->data && h->b.cap == h->cap;
}

static void redact_hbuf(char *msg, size_t cap, const hbuf *h)
{
	size_t text;

	if (h->data == NULL || h->cap == 0)
		return;
	/* what the plugin wrote as text, and what it says it wrote */
	text = strnlen(h->data, h->cap);
	redact_one(msg, cap, h->data, text);
	if (h->b.len < h->cap && h->b.len != text)
		redact_one(msg, cap, h->data, h->b.len);
}

/* A thunk calls one plugin operation with the buffers bufs[0..n). */
typedef int (*op_thunk)(envdbi_plugin *p, void *args, envdb_buffer **bufs);

/* Call `fn` following the buffer protocol.  On success every buffer holds
 * a NUL-terminated value of length b.len. */
static int run_buffered(envdbi_plugin *p, const char *op, op_thunk fn, void *args, hbuf *bufs,
			size_t n, bool may_retry, const void *in_secret, size_t in_secret_len)
{
	envdb_buffer *ptrs[4];
	call c;
	size_t i;
	int attempt, rc = ENVDB_ERR_GENERIC;

	for (attempt = 0; attempt < RETRIES; attempt++) {
		bool grew = false;

		for (i = 0; i < n; i++) {
			bufs[i].b.len = 0;
			ptrs[i] = &bufs[i].b;
		}
		call_begin(&c, p, op, !p->thread_safe);
		if (in_secret != NULL)
			call_secret_in(&c, in_secret, in_secret_len);
		for (i = 0; i < n; i++)
			if (bufs[i].secure)
				call_secret_out(&c, &bufs[i]);
		rc = fn(p, args, ptrs);
		for (i = 0; i < n; i++)
			if (!hbuf_intact(&bufs[i])) {
				/* restore it first: the host frees and reads only its own */
				bufs[i].b.struct_size = sizeof(bufs[i].b);
				bufs[i].b.data = bufs[i].data;
				bufs[i].b.cap = bufs[i].cap;
				call_end(&c, ENVDB_OK);
				return envdbi_error(ENVDB_ERR_GENERIC, NULL,
						    "plugin %s: %s changed output buffer %zu's "
						    "descriptor (struct_size, data or cap); its result "
						    "is discarded",
						    p->name, op, i + 1);
			}
		if (rc != ENVDB_ERR_BUFFER_TOO_SMALL || !may_retry) {
			rc = call_end(&c, rc);
			break;
		}
		/* not an error yet: resize and retry (unless the deadline passed) */
		if ((rc = call_end(&c, ENVDB_OK)) != ENVDB_OK)
			return rc;
		for (i = 0; i < n; i++) {
			size_t need = bufs[i].b.len;
			hbuf bigger;
			if (need < bufs[i].b.cap)
				continue;
			if (need >= OUTPUT_MAX)
				return envdbi_error(ENVDB_ERR_GENERIC, NULL,
						    "plugin %s: %s asked for a %zu-byte buffer (at "
						    "most %u)",
						    p->name, op, need, OUTPUT_MAX);
			if ((rc = hbuf_init(&bigger, need + 1, bufs[i].secure)) != ENVDB_OK)
				return rc;
			hbuf_free(&bufs[i]);
			bufs[i] = bigger;
			grew = true;
		}
		if (!grew)
			return envdbi_error(ENVDB_ERR_GENERIC, NULL,
					    "plugin %s: %s said a buffer was too small but asked "
					    "for no more than it had",
					    p->name, op);
	}
	if (attempt == RETRIES)
		return envdbi_error(ENVDB_ERR_GENERIC, NULL,
				    "plugin %s: %s still wanted larger buffers after %d tries",
				    p->name, op, RETRIES);
	if (rc != ENVDB_OK)
		return rc;
	for (i = 0; i < n; i++) {
		if (bufs[i].b.len >= bufs[i].b.cap)
			return envdbi_error(ENVDB_ERR_GENERIC, NULL,
					    "plugin %s: %s returned a %zu-byte value in a %zu-byte "
					    "buffer",
					    p->name, op, bufs[i].b.len, bufs[i].b.cap);
		bufs[i].b.data[bufs[i].b.len] = '\0';
		if (memchr(bufs[i].b.data, '\0', bufs[i].b.len) != NULL)
			return envdbi_error(ENVDB_ERR_GENERIC, NULL,
					    "plugin %s: %s returned a value with a NUL byte inside "
					    "(output %zu, %zu bytes)",
					    p->name, op, i + 1, bufs[i].b.len);
	}
	return ENVDB_OK;
}

static int take_string(char **out, const hbuf *h)
{
	*out = strndup(h->b.data, h->b.len);
	if (*out == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "out of memory");
	return ENVDB_OK;
}

/* A required output the plugin left empty. */
static int empty_output(const envdbi_plugin *p, const char *op, const char *what)
{
	return envdbi_error(ENVDB_ERR_GENERIC, NULL, "plugin %s: %s succeeded but returned no %s",
			    p->name, op, what);
}

/* ------------------------------------------------------------------------ */
/* Adapter calls                                                             */
/* ------------------------------------------------------------------------ */

static int th_database_name(envdbi_plugin *p, void *args, envdb_buffer **b)
{
	return p->ops.adapter.database_name(p->instance, args, b[0]);
}

int envdbi_adapter_database_name(envdbi_plugin *p, const char *environment_id, char **name)
{
	hbuf b[1] = {{.secure = false}};
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ADAPTER, "database_name", &rc))
		return rc;
	if (environment_id == NULL || name == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "plugin %s: database_name: NULL argument", p->name);
	if ((rc = hbuf_init(&b[0], KEY_ID_CAP, false)) == ENVDB_OK &&
	    (rc = run_buffered(p, "database_name", th_database_name, (void *)environment_id, b, 1,
			       true, NULL, 0)) == ENVDB_OK)
		rc = b[0].b.len == 0 ? empty_output(p, "database_name", "name")
				     : take_string(name, &b[0]);
	hbuf_free(&b[0]);
	return rc;
}

static int th_create(envdbi_plugin *p, void *args, envdb_buffer **b)
{
	return p->ops.adapter.create(p->instance, args, b[0], b[1]);
}

int envdbi_adapter_create(envdbi_plugin *p, const envdb_create_request *req, char **url,
			  char **metadata)
{
	hbuf b[2] = {{.secure = false}, {.secure = false}};
	envdb_create_request creq;
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ADAPTER, "create", &rc))
		return rc;
	if (req == NULL || url == NULL || metadata == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "plugin %s: create: NULL argument",
				    p->name);
	*url = *metadata = NULL;
	if (req->struct_size >= sizeof(*req) && req->deployment_id == NULL &&
	    p->deployment_id[0] != '\0') {
		creq = *req;
		creq.deployment_id = p->deployment_id;
		req = &creq;
	}
	if ((rc = hbuf_init(&b[0], ENVDB_ADAPTER_OUTPUT_MIN, false)) ||
	    (rc = hbuf_init(&b[1], ENVDB_ADAPTER_OUTPUT_MIN, false)) ||
	    (rc = run_buffered(p, "create", th_create, (void *)req, b, 2, true, NULL, 0)))
		goto done;
	if (b[0].b.len == 0) {
		rc = empty_output(p, "create", "url");
		goto done;
	}
	if ((rc = take_string(url, &b[0])) == ENVDB_OK &&
	    (rc = take_string(metadata, &b[1])) != ENVDB_OK) {
		free(*url);
		*url = NULL;
	}
done:
	hbuf_free(&b[0]);
	hbuf_free(&b[1]);
	return rc;
}

int envdbi_adapter_drop(envdbi_plugin *p, const envdb_db_ref *db)
{
	envdb_db_ref copy;
	call c;
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ADAPTER, "drop", &rc))
		return rc;
	if (db == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "plugin %s: drop: NULL argument",
				    p->name);
	db = ref_of(&copy, p, db);
	call_begin(&c, p, "drop", !p->thread_safe);
	return call_end(&c, p->ops.adapter.drop(p->instance, db));
}

typedef struct mint_args {
	const envdb_db_ref *db;
	const envdb_mint_request *req;
} mint_args;

static int th_mint(envdbi_plugin *p, void *args, envdb_buffer **b)
{
	mint_args *a = args;
	return p->ops.adapter.mint(p->instance, a->db, a->req, b[0], b[1]);
}

int envdbi_adapter_mint(envdbi_plugin *p, const envdb_db_ref *db, const envdb_mint_request *req,
			envdbi_secret **secret, char **handle)
{
	hbuf b[2] = {{.secure = true}, {.secure = false}};
	envdb_db_ref copy;
	mint_args a = {ref_of(&copy, p, db), req};
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ADAPTER, "mint", &rc))
		return rc;
	if (db == NULL || req == NULL || secret == NULL || handle == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "plugin %s: mint: NULL argument",
				    p->name);
	*secret = NULL;
	*handle = NULL;
	if (req->authorization == ENVDB_AUTH_READ_ONLY && !(p->caps & ENVDB_ADAPTER_CAP_READ_ONLY))
		return envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
				    "plugin %s: read-only credentials are not supported", p->name);
	/* A 1.0 plugin leaves the granted expiry alone: it is then the one asked. */
	if (ENVDB_STRUCT_HAS(req, envdb_mint_request, granted_expires_at) &&
	    req->granted_expires_at != NULL)
		*req->granted_expires_at = req->expires_at;
	if ((rc = hbuf_init(&b[0], ENVDB_ADAPTER_OUTPUT_MIN, true)) ||
	    (rc = hbuf_init(&b[1], ENVDB_ADAPTER_OUTPUT_MIN, false)) ||
	    (rc = run_buffered(p, "mint", th_mint, &a, b, 2, true, NULL, 0)))
		goto done;
	if (ENVDB_STRUCT_HAS(req, envdb_mint_request, granted_expires_at) &&
	    req->granted_expires_at != NULL && *req->granted_expires_at < 0) {
		rc = envdbi_error(ENVDB_ERR_ABI, NULL,
				  "plugin %s: mint: reported a negative expiry (%lld)", p->name,
				  (long long)*req->granted_expires_at);
		goto done;
	}
	if (b[0].b.len == 0) {
		rc = empty_output(p, "mint", "secret");
		goto done;
	}
	*secret = envdbi_secret_new(b[0].b.data, b[0].b.len);
	if (*secret == NULL) {
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "plugin %s: mint: out of secure memory",
				  p->name);
		goto done;
	}
	if ((rc = take_string(handle, &b[1])) != ENVDB_OK) {
		envdbi_secret_free(*secret);
		*secret = NULL;
	}
done:
	hbuf_free(&b[0]);
	hbuf_free(&b[1]);
	return rc;
}

int envdbi_adapter_revoke(envdbi_plugin *p, const envdb_db_ref *db, uint32_t authorization,
			  const char *handle)
{
	envdb_db_ref copy;
	call c;
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ADAPTER, "revoke", &rc))
		return rc;
	if (p->ops.adapter.revoke == NULL)
		return not_supported(p, "revoke");
	if (db == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "plugin %s: revoke: NULL argument",
				    p->name);
	db = ref_of(&copy, p, db);
	call_begin(&c, p, "revoke", !p->thread_safe);
	return call_end(
	    &c, p->ops.adapter.revoke(p->instance, db, authorization, handle ? handle : ""));
}

/* suspend and resume (ABI 1.1): same shape, one body. */
static int lockout(envdbi_plugin *p, const envdb_db_ref *db, bool suspend)
{
	const char *op = suspend ? "suspend" : "resume";
	envdb_adapter_suspend_fn fn;
	envdb_db_ref copy;
	call c;
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ADAPTER, op, &rc))
		return rc;
	fn = suspend ? p->ops.adapter.suspend : p->ops.adapter.resume;
	if (fn == NULL || !(p->caps & ENVDB_ADAPTER_CAP_SUSPEND))
		return not_supported(p, op);
	if (db == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "plugin %s: %s: NULL argument", p->name,
				    op);
	db = ref_of(&copy, p, db);
	call_begin(&c, p, op, !p->thread_safe);
	return call_end(&c, fn(p->instance, db));
}

int envdbi_adapter_suspend(envdbi_plugin *p, const envdb_db_ref *db)
{
	return lockout(p, db, true);
}

int envdbi_adapter_resume(envdbi_plugin *p, const envdb_db_ref *db)
{
	return lockout(p, db, false);
}

int envdbi_adapter_probe(envdbi_plugin *p, const envdb_db_ref *db, const envdbi_secret *secret)
{
	envdb_db_ref copy;
	call c;
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ADAPTER, "probe", &rc))
		return rc;
	if (p->ops.adapter.probe == NULL)
		return not_supported(p, "probe");
	if (db == NULL || secret == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "plugin %s: probe: NULL argument",
				    p->name);
	call_begin(&c, p, "probe", !p->thread_safe);
	call_secret_in(&c, secret->data, secret->len);
	db = ref_of(&copy, p, db);
	return call_end(&c, p->ops.adapter.probe(p->instance, db, secret->data, secret->len));
}

typedef struct name_list {
	char **v;
	size_t n, cap;
	bool nomem;
} name_list;

static int collect_name(void *cb_ctx, const char *name)
{
	name_list *l = cb_ctx;
	char *dup;

	if (name == NULL)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL) {
			l->nomem = true;
			return 1;
		}
		l->v = v;
		l->cap = cap;
	}
	if ((dup = strdup(name)) == NULL) {
		l->nomem = true;
		return 1;
	}
	l->v[l->n++] = dup;
	return 0;
}

int envdbi_adapter_list(envdbi_plugin *p, char ***names, size_t *n)
{
	name_list l = {NULL, 0, 0, false};
	call c;
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ADAPTER, "list", &rc))
		return rc;
	if (p->ops.adapter.list == NULL)
		return not_supported(p, "list");
	if (names == NULL || n == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "plugin %s: list: NULL argument",
				    p->name);
	*names = NULL;
	*n = 0;
	call_begin(&c, p, "list", !p->thread_safe);
	rc = p->ops.adapter.list(p->instance, collect_name, &l);
	if (l.nomem)
		rc = call_end(&c, call_report(&c, ENVDB_ERR_NOMEM, NULL, "list: out of memory"));
	else
		rc = call_end(&c, rc);
	if (rc != ENVDB_OK) {
		envdbi_strv_free(l.v, l.n);
		return rc;
	}
	*names = l.v;
	*n = l.n;
	return ENVDB_OK;
}

void envdbi_strv_free(char **v, size_t n)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ------------------------------------------------------------------------ */
/* Encryptor calls                                                           */
/* ------------------------------------------------------------------------ */

typedef struct crypt_args {
	const void *in;
	size_t in_len;
	const void *aad;
	size_t aad_len;
	int flag;
} crypt_args;

static int th_current_key(envdbi_plugin *p, void *args, envdb_buffer **b)
{
	(void)args;
	return p->ops.encryptor.current_key(p->instance, b[0]);
}

int envdbi_encryptor_current_key(envdbi_plugin *p, char **key_id)
{
	hbuf b[1] = {{.secure = false}};
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ENCRYPTOR, "current_key", &rc))
		return rc;
	if (key_id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "plugin %s: current_key: NULL argument",
				    p->name);
	if ((rc = hbuf_init(&b[0], KEY_ID_CAP, false)) == ENVDB_OK &&
	    (rc = run_buffered(p, "current_key", th_current_key, NULL, b, 1, true, NULL, 0)) ==
		ENVDB_OK)
		rc = b[0].b.len == 0 ? empty_output(p, "current_key", "key id")
				     : take_string(key_id, &b[0]);
	hbuf_free(&b[0]);
	return rc;
}

static int th_encrypt(envdbi_plugin *p, void *args, envdb_buffer **b)
{
	crypt_args *a = args;
	return p->ops.encryptor.encrypt(p->instance, a->in, a->in_len, a->aad, a->aad_len, b[0],
					b[1]);
}

int envdbi_encryptor_encrypt(envdbi_plugin *p, const envdbi_secret *pt, const void *aad,
			     size_t aad_len, char **ct, char **key_id)
{
	hbuf b[2] = {{.secure = false}, {.secure = false}};
	crypt_args a;
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ENCRYPTOR, "encrypt", &rc))
		return rc;
	if (pt == NULL || ct == NULL || key_id == NULL || (aad == NULL && aad_len > 0))
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "plugin %s: encrypt: NULL argument",
				    p->name);
	*ct = *key_id = NULL;
	a.in = pt->data;
	a.in_len = pt->len;
	a.aad = aad;
	a.aad_len = aad_len;
	if ((rc = hbuf_init(&b[0], pt->len * 2 + 1024, false)) ||
	    (rc = hbuf_init(&b[1], KEY_ID_CAP, false)) ||
	    (rc = run_buffered(p, "encrypt", th_encrypt, &a, b, 2, true, pt->data, pt->len)))
		goto done;
	if (b[0].b.len == 0 || b[1].b.len == 0) {
		rc = empty_output(p, "encrypt", b[0].b.len == 0 ? "ciphertext" : "key id");
		goto done;
	}
	if ((rc = take_string(ct, &b[0])) == ENVDB_OK && (rc = take_string(key_id, &b[1])) != 0) {
		free(*ct);
		*ct = NULL;
	}
done:
	hbuf_free(&b[0]);
	hbuf_free(&b[1]);
	return rc;
}

static int th_decrypt(envdbi_plugin *p, void *args, envdb_buffer **b)
{
	crypt_args *a = args;
	return p->ops.encryptor.decrypt(p->instance, a->in, a->in_len, a->aad, a->aad_len, b[0]);
}

int envdbi_encryptor_decrypt(envdbi_plugin *p, const char *ct, const void *aad, size_t aad_len,
			     envdbi_secret **pt)
{
	hbuf b[1] = {{.secure = true}};
	crypt_args a;
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ENCRYPTOR, "decrypt", &rc))
		return rc;
	if (ct == NULL || pt == NULL || (aad == NULL && aad_len > 0))
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "plugin %s: decrypt: NULL argument",
				    p->name);
	*pt = NULL;
	a.in = ct;
	a.in_len = strlen(ct);
	a.aad = aad;
	a.aad_len = aad_len;
	if ((rc = hbuf_init(&b[0], a.in_len + 1, true)) ||
	    (rc = run_buffered(p, "decrypt", th_decrypt, &a, b, 1, true, NULL, 0)))
		goto done;
	*pt = envdbi_secret_new(b[0].b.data, b[0].b.len);
	if (*pt == NULL)
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "plugin %s: decrypt: out of secure memory",
				  p->name);
done:
	hbuf_free(&b[0]);
	return rc;
}

static int th_key_of(envdbi_plugin *p, void *args, envdb_buffer **b)
{
	crypt_args *a = args;
	return p->ops.encryptor.key_of(p->instance, a->in, a->in_len, b[0]);
}

int envdbi_encryptor_key_of(envdbi_plugin *p, const char *ct, char **key_id)
{
	hbuf b[1] = {{.secure = false}};
	crypt_args a = {ct, ct ? strlen(ct) : 0, NULL, 0, 0};
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ENCRYPTOR, "key_of", &rc))
		return rc;
	if (ct == NULL || key_id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "plugin %s: key_of: NULL argument",
				    p->name);
	*key_id = NULL;
	if ((rc = hbuf_init(&b[0], KEY_ID_CAP, false)) == ENVDB_OK &&
	    (rc = run_buffered(p, "key_of", th_key_of, &a, b, 1, true, NULL, 0)) == ENVDB_OK)
		rc = take_string(key_id, &b[0]);
	hbuf_free(&b[0]);
	return rc;
}

static int th_rewrap(envdbi_plugin *p, void *args, envdb_buffer **b)
{
	crypt_args *a = args;
	return p->ops.encryptor.rewrap(p->instance, a->in, a->in_len, a->aad, a->aad_len, b[0],
				       b[1]);
}

int envdbi_encryptor_rewrap(envdbi_plugin *p, const char *ct, const void *aad, size_t aad_len,
			    char **ct_out, char **key_id)
{
	hbuf b[2] = {{.secure = false}, {.secure = false}};
	crypt_args a = {ct, ct ? strlen(ct) : 0, aad, aad_len, 0};
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ENCRYPTOR, "rewrap", &rc))
		return rc;
	if (p->ops.encryptor.rewrap == NULL)
		return not_supported(p, "rewrap");
	if (ct == NULL || ct_out == NULL || key_id == NULL || (aad == NULL && aad_len > 0))
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "plugin %s: rewrap: NULL argument",
				    p->name);
	*ct_out = *key_id = NULL;
	if ((rc = hbuf_init(&b[0], a.in_len + 1024, false)) ||
	    (rc = hbuf_init(&b[1], KEY_ID_CAP, false)) ||
	    (rc = run_buffered(p, "rewrap", th_rewrap, &a, b, 2, true, NULL, 0)))
		goto done;
	if (b[0].b.len == 0 || b[1].b.len == 0) {
		rc = empty_output(p, "rewrap", b[0].b.len == 0 ? "ciphertext" : "key id");
		goto done;
	}
	if ((rc = take_string(ct_out, &b[0])) == ENVDB_OK &&
	    (rc = take_string(key_id, &b[1])) != ENVDB_OK) {
		free(*ct_out);
		*ct_out = NULL;
	}
done:
	hbuf_free(&b[0]);
	hbuf_free(&b[1]);
	return rc;
}

int envdbi_encryptor_key_list(envdbi_plugin *p, envdb_encryptor_key_cb cb, void *cb_ctx)
{
	call c;
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ENCRYPTOR, "key_list", &rc))
		return rc;
	if (p->ops.encryptor.key_list == NULL)
		return not_supported(p, "key_list");
	if (cb == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "plugin %s: key_list: NULL callback",
				    p->name);
	call_begin(&c, p, "key_list", !p->thread_safe);
	return call_end(&c, p->ops.encryptor.key_list(p->instance, cb, cb_ctx));
}

static int th_key_generate(envdbi_plugin *p, void *args, envdb_buffer **b)
{
	crypt_args *a = args;
	return p->ops.encryptor.key_generate(p->instance, a->flag, b[0]);
}

int envdbi_encryptor_key_generate(envdbi_plugin *p, int make_current, char **key_id)
{
	hbuf b[1] = {{.secure = false}};
	crypt_args a = {NULL, 0, NULL, 0, make_current ? 1 : 0};
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ENCRYPTOR, "key_generate", &rc))
		return rc;
	if (p->ops.encryptor.key_generate == NULL)
		return not_supported(p, "key_generate");
	if (key_id == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "plugin %s: key_generate: NULL argument", p->name);
	*key_id = NULL;
	/* Not idempotent: never retried, so the buffer is generous. */
	if ((rc = hbuf_init(&b[0], KEY_GENERATE_CAP, false)) == ENVDB_OK &&
	    (rc = run_buffered(p, "key_generate", th_key_generate, &a, b, 1, false, NULL, 0)) ==
		ENVDB_OK)
		rc = take_string(key_id, &b[0]);
	hbuf_free(&b[0]);
	return rc;
}

/* ABI 1.1 encryptor operations. */

int envdbi_encryptor_health(envdbi_plugin *p)
{
	call c;
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ENCRYPTOR, "health", &rc))
		return rc;
	if (p->ops.encryptor.health == NULL || !(p->caps & ENVDB_ENCRYPTOR_CAP_HEALTH))
		return not_supported(p, "health");
	call_begin(&c, p, "health", !p->thread_safe);
	return call_end(&c, p->ops.encryptor.health(p->instance));
}

int envdbi_encryptor_is_current(envdbi_plugin *p, const char *ct, bool *is_current)
{
	int cur = -1;
	call c;
	int rc;

	if (!plugin_ready(p, ENVDB_PLUGIN_ENCRYPTOR, "is_current", &rc))
		return rc;
	if (p->ops.encryptor.is_current == NULL || !(p->caps & ENVDB_ENCRYPTOR_CAP_KEY_VERSIONS))
		return not_supported(p, "is_current");
	if (ct == NULL || is_current == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "plugin %s: is_current: NULL argument",
				    p->name);
	call_begin(&c, p, "is_current", !p->thread_safe);
	rc = call_end(&c, p->ops.encryptor.is_current(p->instance, ct, strlen(ct), &cur));
	if (rc != ENVDB_OK)
		return rc;
	if (cur != 0 && cur != 1)
		return envdbi_error(ENVDB_ERR_ABI, NULL,
				    "plugin %s: is_current answered %d (0 or 1 expected)", p->name,
				    cur);
	*is_current = cur == 1;
	return ENVDB_OK;
}
