/*
 * sdk/conformance/report.c — the kit's output: one line per check
 * ("ok - name", "FAIL - name: detail", "skip - name: why"), findings
 * collected along the way, and the closing "N passed, N failed" line.
 * Every line is written whole under a lock (checks run on several threads).
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kit.h"

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *out_file; /* the kit's own standard output (kit_output_init) */

/* Where the kit prints: a duplicate of the original standard output, so
 * that fd 1 can be pointed elsewhere while the plugin runs (call.c). */
static FILE *out(void)
{
	return out_file != NULL ? out_file : stdout;
}

void kit_output_init(void)
{
	int fd = dup(STDOUT_FILENO);

	if (fd >= 0 && (out_file = fdopen(fd, "w")) == NULL)
		close(fd);
}
static unsigned n_pass, n_fail, n_skip;
static bool verbose;

static const char *const category_names[KIT_N_CATEGORIES] = {
	[KIT_ERRORS] = "errors",
	[KIT_SECRETS] = "secrets",
	[KIT_OWNERSHIP] = "ownership",
	[KIT_BUFFERS] = "buffers",
	[KIT_MEMORY] = "memory",
	[KIT_SECURE] = "secure memory",
	[KIT_STATUS] = "status codes",
	[KIT_STDOUT] = "standard output",
};

static const char *const category_ok[KIT_N_CATEGORIES] = {
	[KIT_ERRORS] = "every failure was reported through host->error with its status",
	[KIT_SECRETS] = "no known secret in any message, log line, output or ordinary memory",
	[KIT_OWNERSHIP] = "no borrowed input was used after its call",
	[KIT_BUFFERS] = "every output buffer followed the buffer protocol",
	[KIT_MEMORY] = "every host->alloc block was released with host->free",
	[KIT_SECURE] = "every host->secure_alloc block was released with host->secure_free",
	[KIT_STATUS] = "every operation returned an envdb_status",
	[KIT_STDOUT] = "nothing was written to standard output (it carries envdb --json)",
};

static struct {
	unsigned count;
	char first[1024];
} findings[KIT_N_CATEGORIES];

static void line(const char *tag, const char *name, const char *fmt, va_list ap)
{
	char detail[2048] = "";

	if (fmt != NULL)
		vsnprintf(detail, sizeof(detail), fmt, ap);
	/* Nothing the kit prints may carry a secret either. */
	pthread_mutex_lock(&out_lock);
	if (detail[0] != '\0')
		fprintf(out(), "%s - %s: %s\n", tag, name, kit_redact(detail));
	else
		fprintf(out(), "%s - %s\n", tag, name);
	fflush(out());
	pthread_mutex_unlock(&out_lock);
}

void kit_ok(const char *name, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	line("ok", name, verbose ? fmt : NULL, ap);
	va_end(ap);
	pthread_mutex_lock(&out_lock);
	n_pass++;
	pthread_mutex_unlock(&out_lock);
}

void kit_fail(const char *name, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	line("FAIL", name, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&out_lock);
	n_fail++;
	pthread_mutex_unlock(&out_lock);
}

void kit_skip(const char *name, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	line("skip", name, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&out_lock);
	n_skip++;
	pthread_mutex_unlock(&out_lock);
}

bool kit_check(bool cond, const char *name, const char *fmt, ...)
{
	va_list ap;

	/* The detail describes a failure: an ok line goes without it. */
	va_start(ap, fmt);
	line(cond ? "ok" : "FAIL", name, cond ? NULL : fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&out_lock);
	if (cond)
		n_pass++;
	else
		n_fail++;
	pthread_mutex_unlock(&out_lock);
	return cond;
}

void kit_note(const char *fmt, ...)
{
	char text[2048];
	va_list ap;

	if (!verbose)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&out_lock);
	fprintf(out(), "# %s\n", kit_redact(text));
	fflush(out());
	pthread_mutex_unlock(&out_lock);
}

void kit_set_verbose(bool on)
{
	verbose = on;
}

bool kit_verbose(void)
{
	return verbose;
}

unsigned kit_summary(void)
{
	fprintf(out(), "%u passed, %u failed", n_pass, n_fail);
	if (n_skip > 0)
		fprintf(out(), " (%u skipped)", n_skip);
	fprintf(out(), "\n");
	fflush(out());
	return n_fail;
}

unsigned kit_failures(void)
{
	return n_fail;
}

void kit_finding(enum kit_category cat, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&out_lock);
	if (findings[cat].count++ == 0)
		snprintf(findings[cat].first, sizeof(findings[cat].first), "%s", text);
	pthread_mutex_unlock(&out_lock);
	kit_note("finding (%s): %s", category_names[cat], text);
}

unsigned kit_finding_count(enum kit_category cat)
{
	unsigned n;

	pthread_mutex_lock(&out_lock);
	n = findings[cat].count;
	pthread_mutex_unlock(&out_lock);
	return n;
}

void kit_findings_report(void)
{
	int c;

	for (c = 0; c < KIT_N_CATEGORIES; c++) {
		if (findings[c].count == 0)
			kit_ok(category_names[c], "%s", category_ok[c]);
		else if (findings[c].count == 1)
			kit_fail(category_names[c], "%s", findings[c].first);
		else
			kit_fail(category_names[c], "%u problems; first: %s", findings[c].count,
				 findings[c].first);
	}
}

/* The name of a status <envdb/status.h> defines, or NULL. */
static const char *known_name(int status)
{
	switch (status) {
	case ENVDB_OK: return "ENVDB_OK";
	case ENVDB_ERR_GENERIC: return "ENVDB_ERR_GENERIC";
	case ENVDB_ERR_MISUSE: return "ENVDB_ERR_MISUSE";
	case ENVDB_ERR_NOT_FOUND: return "ENVDB_ERR_NOT_FOUND";
	case ENVDB_ERR_EXISTS: return "ENVDB_ERR_EXISTS";
	case ENVDB_ERR_AUTH: return "ENVDB_ERR_AUTH";
	case ENVDB_ERR_PERMISSION: return "ENVDB_ERR_PERMISSION";
	case ENVDB_ERR_UNAVAILABLE: return "ENVDB_ERR_UNAVAILABLE";
	case ENVDB_ERR_TIMEOUT: return "ENVDB_ERR_TIMEOUT";
	case ENVDB_ERR_INTEGRITY: return "ENVDB_ERR_INTEGRITY";
	case ENVDB_ERR_BUFFER_TOO_SMALL: return "ENVDB_ERR_BUFFER_TOO_SMALL";
	case ENVDB_ERR_NOT_SUPPORTED: return "ENVDB_ERR_NOT_SUPPORTED";
	case ENVDB_ERR_NOMEM: return "ENVDB_ERR_NOMEM";
	case ENVDB_ERR_IO: return "ENVDB_ERR_IO";
	case ENVDB_ERR_CONFIG: return "ENVDB_ERR_CONFIG";
	case ENVDB_ERR_ABI: return "ENVDB_ERR_ABI";
	case ENVDB_ERR_INVALID: return "ENVDB_ERR_INVALID";
	case ENVDB_ERR_STATE: return "ENVDB_ERR_STATE";
	case ENVDB_ERR_BUSY: return "ENVDB_ERR_BUSY";
	default: return NULL;
	}
}

bool kit_status_known(int status)
{
	return known_name(status) != NULL;
}

const char *kit_status_name(int status)
{
	static _Thread_local char other[32];
	const char *name = known_name(status);

	if (name != NULL)
		return name;
	snprintf(other, sizeof(other), "status %d", status);
	return other;
}
