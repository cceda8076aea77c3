/*
 * core/error.c — the thread-local last error (envdb_error_last) and the
 * library's log sink.
 *
 * Every failing envdb function leaves a description here: a status, a
 * lowercase message naming the object, the operation and the cause, and
 * optionally the backend's native code.  Storage is a fixed per-thread
 * buffer, so reporting an error never allocates (and cannot fail or leak
 * when a thread exits).  Messages never contain secrets: callers make sure
 * of that, this file only copies — and wipes what a message leaves behind
 * (the rest of the buffer after a shorter message, the formatting
 * buffers), so that nothing of a plugin's earlier report outlives it.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "internal.h"

#define ENVDBI_ERROR_MSG_MAX 2048
#define ENVDBI_ERROR_NATIVE_MAX 64

typedef struct envdbi_error_state {
	envdb_error pub;
	unsigned generation;
	char message[ENVDBI_ERROR_MSG_MAX];
	char native[ENVDBI_ERROR_NATIVE_MAX];
} envdbi_error_state;

static _Thread_local envdbi_error_state tls_error;

static envdbi_error_state *error_state(void)
{
	envdbi_error_state *st = &tls_error;
	if (st->pub.message == NULL)
		st->pub.message = st->message; /* "" until the first error */
	return st;
}

static void error_set_native(envdbi_error_state *st, const char *native)
{
	if (native != NULL && native[0] != '\0') {
		size_t len = strnlen(native, sizeof(st->native) - 1);
		memmove(st->native, native, len);
		sodium_memzero(st->native + len, sizeof(st->native) - len);
		st->pub.native_code = st->native;
	} else {
		sodium_memzero(st->native, sizeof(st->native));
		st->pub.native_code = NULL;
	}
}

/* Make `text` the message; zero the rest of the buffer, which may still
 * hold the tail of a longer earlier message. */
static void message_set(envdbi_error_state *st, const char *text)
{
	size_t len = strnlen(text, sizeof(st->message) - 1);

	memmove(st->message, text, len);
	sodium_memzero(st->message + len, sizeof(st->message) - len);
	st->pub.message = st->message;
}

int envdbi_error_v(int status, const char *native, const char *fmt, va_list ap)
{
	envdbi_error_state *st = error_state();
	char tmp[ENVDBI_ERROR_MSG_MAX];

	/* Format into a temporary first: an argument may point at the current
	 * message (re-reporting a plugin's error with context). */
	if (fmt != NULL)
		vsnprintf(tmp, sizeof(tmp), fmt, ap);
	else
		tmp[0] = '\0';
	message_set(st, tmp);
	sodium_memzero(tmp, sizeof(tmp));
	st->pub.status = status;
	error_set_native(st, native);
	st->generation++;
	return status;
}

int envdbi_error(int status, const char *native, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = envdbi_error_v(status, native, fmt, ap);
	va_end(ap);
	return rc;
}

int envdbi_error_prefix(const char *fmt, ...)
{
	envdbi_error_state *st = error_state();
	char tmp[ENVDBI_ERROR_MSG_MAX];
	size_t used, len;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	used = n < 0 ? 0 : (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1;
	len = strlen(st->message);
	if (len > sizeof(tmp) - 1 - used)
		len = sizeof(tmp) - 1 - used;
	memcpy(tmp + used, st->message, len);
	tmp[used + len] = '\0';
	message_set(st, tmp);
	sodium_memzero(tmp, sizeof(tmp));
	if (st->pub.status == 0)
		st->pub.status = ENVDB_ERR_GENERIC;
	return st->pub.status;
}

unsigned envdbi_error_generation(void)
{
	return error_state()->generation;
}

const envdb_error *envdb_error_last(void)
{
	return &error_state()->pub;
}

void envdb_error_clear(void)
{
	envdbi_error_state *st = error_state();

	st->pub.status = 0;
	message_set(st, "");
	error_set_native(st, NULL);
}

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */
/* ------------------------------------------------------------------------ */

static int log_threshold(void)
{
	static const struct {
		const char *name;
		int level;
	} levels[] = {
	    {"error", ENVDB_LOG_ERROR}, {"warning", ENVDB_LOG_WARNING}, {"warn", ENVDB_LOG_WARNING},
	    {"info", ENVDB_LOG_INFO},   {"debug", ENVDB_LOG_DEBUG},
	};
	const char *v = getenv("ENVDB_LOG_LEVEL");
	size_t i;

	if (v != NULL)
		for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
			if (strcasecmp(v, levels[i].name) == 0)
				return levels[i].level;
	return ENVDB_LOG_WARNING;
}

void envdbi_log_v(int level, const char *fmt, va_list ap)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};
	char line[ENVDBI_ERROR_MSG_MAX];

	if (level > log_threshold())
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	/* One fprintf per line so that lines of threads do not interleave. */
	fprintf(stderr, "envdb: %s: %s\n",
		(level >= 0 && level <= ENVDB_LOG_DEBUG) ? names[level] : "log", line);
	sodium_memzero(line, sizeof(line));
}

void envdbi_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	envdbi_log_v(level, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* Status names                                                              */
/* ------------------------------------------------------------------------ */

/* The name of a status, NULL when it is not an envdb_status. */
static const char *status_name(int status)
{
	switch (status) {
	case ENVDB_OK:
		return "ok";
	case ENVDB_ERR_GENERIC:
		return "error";
	case ENVDB_ERR_MISUSE:
		return "misuse";
	case ENVDB_ERR_NOT_FOUND:
		return "not found";
	case ENVDB_ERR_EXISTS:
		return "exists";
	case ENVDB_ERR_AUTH:
		return "authentication failed";
	case ENVDB_ERR_PERMISSION:
		return "permission denied";
	case ENVDB_ERR_UNAVAILABLE:
		return "unavailable";
	case ENVDB_ERR_TIMEOUT:
		return "timeout";
	case ENVDB_ERR_INTEGRITY:
		return "integrity check failed";
	case ENVDB_ERR_BUFFER_TOO_SMALL:
		return "buffer too small";
	case ENVDB_ERR_NOT_SUPPORTED:
		return "not supported";
	case ENVDB_ERR_NOMEM:
		return "out of memory";
	case ENVDB_ERR_IO:
		return "i/o error";
	case ENVDB_ERR_CONFIG:
		return "configuration error";
	case ENVDB_ERR_ABI:
		return "plugin abi mismatch";
	case ENVDB_ERR_INVALID:
		return "invalid";
	case ENVDB_ERR_STATE:
		return "invalid state";
	case ENVDB_ERR_BUSY:
		return "busy";
	default:
		return NULL;
	}
}

const char *envdb_status_str(int status)
{
	const char *name = status_name(status);

	return name ? name : "unknown status";
}

bool envdbi_status_known(int status)
{
	return status_name(status) != NULL;
}
