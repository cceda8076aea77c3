/*
 * sdk/conformance/host.c — the instrumented host the kit hands to the
 * plugin under test.  It behaves like envdb's host, and it watches:
 *
 *  - every block of host->alloc and host->secure_alloc is registered, so
 *    the kit can tell a leak, a double or foreign free, or mixed allocators
 *    (secure memory released with free, and the reverse);
 *  - ordinary blocks are searched for known secrets when the plugin frees
 *    them (a secret copied out of secure memory);
 *  - every host->error and host->log line is searched for known secrets and
 *    for the poison written over borrowed buffers; the report of the
 *    current call is kept per thread so the call wrappers can compare it
 *    with the status returned;
 *  - the deadline is per thread and set by the checks.
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef VALGRIND_DISABLE_ERROR_REPORTING
#define VALGRIND_DISABLE_ERROR_REPORTING
#define VALGRIND_ENABLE_ERROR_REPORTING
#endif

#include "kit.h"

struct envdb_host_ctx {
	int unused;
};

/* ------------------------------------------------------------------------ */
/* Kit-side memory                                                           */
/* ------------------------------------------------------------------------ */

void *kit_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL) {
		fprintf(stderr, "envdb-conformance: out of memory\n");
		abort();
	}
	return p;
}

char *kit_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = kit_xmalloc(n);

	memcpy(p, s, n);
	return p;
}

void *kit_smalloc(size_t n)
{
	void *p = kit_xmalloc(n);

	memset(p, 0, n ? n : 1);
	return p;
}

void kit_sfree(void *p, size_t n)
{
	if (p == NULL)
		return;
	sodium_memzero(p, n);
	free(p);
}

/* ------------------------------------------------------------------------ */
/* The allocation registry: pointer -> (size, kind), open addressing          */
/* ------------------------------------------------------------------------ */

enum { KIND_FREE = 0, KIND_TOMB = 1, KIND_PLAIN = 2, KIND_SECURE = 3 };

typedef struct slot {
	void *ptr;
	size_t size;
	int kind;
} slot;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static slot *reg;
static size_t reg_cap, reg_used; /* used counts live + tombstones */
static long live_plain, live_secure;

static size_t ptr_hash(const void *p)
{
	uintptr_t x = (uintptr_t)p;

	x ^= x >> 17;
	x *= (uintptr_t)0x9E3779B97F4A7C15ull;
	x ^= x >> 29;
	return (size_t)x;
}

static slot *reg_find(const void *p)
{
	size_t i;

	if (reg_cap == 0)
		return NULL;
	for (i = ptr_hash(p) & (reg_cap - 1);; i = (i + 1) & (reg_cap - 1)) {
		if (reg[i].kind == KIND_FREE)
			return NULL;
		if (reg[i].kind >= KIND_PLAIN && reg[i].ptr == p)
			return &reg[i];
	}
}

static void reg_insert_raw(void *p, size_t size, int kind)
{
	size_t i;

	for (i = ptr_hash(p) & (reg_cap - 1); reg[i].kind >= KIND_PLAIN;
	     i = (i + 1) & (reg_cap - 1))
		;
	if (reg[i].kind == KIND_FREE)
		reg_used++;
	reg[i].ptr = p;
	reg[i].size = size;
	reg[i].kind = kind;
}

static void reg_add(void *p, size_t size, int kind)
{
	if ((reg_used + 1) * 2 > reg_cap) {
		slot *old = reg;
		size_t i, old_cap = reg_cap;

		reg_cap = reg_cap ? reg_cap * 2 : 1024;
		reg = calloc(reg_cap, sizeof(slot));
		if (reg == NULL) {
			fprintf(stderr, "envdb-conformance: out of memory\n");
			abort();
		}
		reg_used = 0;
		for (i = 0; i < old_cap; i++)
			if (old[i].kind >= KIND_PLAIN)
				reg_insert_raw(old[i].ptr, old[i].size, old[i].kind);
		free(old);
	}
	reg_insert_raw(p, size, kind);
	if (kind == KIND_PLAIN)
		live_plain++;
	else
		live_secure++;
}

static void reg_remove(slot *s)
{
	if (s->kind == KIND_PLAIN)
		live_plain--;
	else
		live_secure--;
	s->kind = KIND_TOMB;
	s->ptr = NULL;
}

long kit_live_allocs(void)
{
	long n;

	pthread_mutex_lock(&reg_lock);
	n = live_plain;
	pthread_mutex_unlock(&reg_lock);
	return n;
}

long kit_live_secure(void)
{
	long n;

	pthread_mutex_lock(&reg_lock);
	n = live_secure;
	pthread_mutex_unlock(&reg_lock);
	return n;
}

/* ------------------------------------------------------------------------ */
/* Known secrets                                                             */
/* ------------------------------------------------------------------------ */

#define SECRET_MIN 6

typedef struct known_secret {
	char *data; /* kit secure memory */
	size_t len;
	const char *label;
} known_secret;

static pthread_mutex_t secret_lock = PTHREAD_MUTEX_INITIALIZER;
static known_secret *secrets;
static size_t n_secrets, cap_secrets;

void kit_secret_add(const void *data, size_t len, const char *label)
{
	size_t i;

	if (data == NULL || len < SECRET_MIN)
		return;
	pthread_mutex_lock(&secret_lock);
	for (i = 0; i < n_secrets; i++)
		if (secrets[i].len == len && memcmp(secrets[i].data, data, len) == 0)
			goto out;
	if (n_secrets == cap_secrets) {
		known_secret *v;

		cap_secrets = cap_secrets ? cap_secrets * 2 : 64;
		v = realloc(secrets, cap_secrets * sizeof(*v));
		if (v == NULL) {
			fprintf(stderr, "envdb-conformance: out of memory\n");
			abort();
		}
		secrets = v;
	}
	secrets[n_secrets].data = kit_smalloc(len);
	memcpy(secrets[n_secrets].data, data, len);
	secrets[n_secrets].len = len;
	secrets[n_secrets].label = label;
	n_secrets++;
out:
	pthread_mutex_unlock(&secret_lock);
}

const char *kit_secret_find(const void *data, size_t len)
{
	const char *label = NULL;
	size_t i;

	if (data == NULL)
		return NULL;
	pthread_mutex_lock(&secret_lock);
	for (i = 0; i < n_secrets && label == NULL; i++)
		if (memmem(data, len, secrets[i].data, secrets[i].len) != NULL)
			label = secrets[i].label;
	pthread_mutex_unlock(&secret_lock);
	return label;
}

const char *kit_redact(const char *text)
{
	static _Thread_local char out[4096];
	size_t o = 0, i = 0, n = strlen(text);

	pthread_mutex_lock(&secret_lock);
	while (i < n && o + 4 < sizeof(out)) {
		size_t s, hit = 0;

		for (s = 0; s < n_secrets; s++)
			if (secrets[s].len <= n - i &&
			    memcmp(text + i, secrets[s].data, secrets[s].len) == 0) {
				hit = secrets[s].len;
				break;
			}
		if (hit > 0) {
			memcpy(out + o, "***", 3);
			o += 3;
			i += hit;
		} else {
			out[o++] = text[i++];
		}
	}
	out[o] = '\0';
	pthread_mutex_unlock(&secret_lock);
	return out;
}

bool kit_poisoned(const char *text, size_t len)
{
	/* The first characters of KIT_POISON, long enough to be unmistakable. */
	return text != NULL && memmem(text, len, "#POISON", 7) != NULL;
}

/* ------------------------------------------------------------------------ */
/* Per-thread state                                                          */
/* ------------------------------------------------------------------------ */

static _Thread_local kit_report tls_report;
static _Thread_local char tls_transcript[16384];
static _Thread_local size_t tls_transcript_len;
static _Thread_local int64_t tls_deadline;
static _Thread_local const char *tls_op;
static const char *volatile last_op = "init";
static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long n_log, n_error;

void kit_report_reset(void)
{
	memset(&tls_report, 0, sizeof(tls_report));
	tls_transcript_len = 0;
	tls_transcript[0] = '\0';
}

static void transcript_add(const char *text)
{
	size_t n = strlen(text);

	if (tls_transcript_len + n + 2 > sizeof(tls_transcript))
		return;
	memcpy(tls_transcript + tls_transcript_len, text, n);
	tls_transcript_len += n;
	tls_transcript[tls_transcript_len++] = '\n';
	tls_transcript[tls_transcript_len] = '\0';
}

void kit_transcript_scan(const char *op)
{
	const char *label = kit_secret_find(tls_transcript, tls_transcript_len);

	if (label != NULL)
		kit_finding(KIT_SECRETS, "a message or log line during %s contains %s: \"%s\"", op,
			    label, kit_redact(tls_transcript));
}

const char *kit_why(int rc)
{
	static _Thread_local char out[1200];

	if (rc == ENVDB_OK || tls_report.count == 0)
		snprintf(out, sizeof(out), "%s", kit_status_name(rc));
	else
		snprintf(out, sizeof(out), "%s: \"%s\"", kit_status_name(rc), tls_report.message);
	return out;
}

const kit_report *kit_report_get(void)
{
	return &tls_report;
}

void kit_set_deadline(int64_t deadline_ms)
{
	tls_deadline = deadline_ms;
}

void kit_set_current_op(const char *op)
{
	tls_op = op;
	last_op = op;
}

const char *kit_current_op(void)
{
	return last_op;
}

unsigned long kit_log_lines(void)
{
	unsigned long n;

	pthread_mutex_lock(&count_lock);
	n = n_log;
	pthread_mutex_unlock(&count_lock);
	return n;
}

unsigned long kit_error_reports(void)
{
	unsigned long n;

	pthread_mutex_lock(&count_lock);
	n = n_error;
	pthread_mutex_unlock(&count_lock);
	return n;
}

static const char *op_name(void)
{
	return tls_op ? tls_op : "a call";
}

void kit_host_cleanup(void)
{
	size_t i;

	pthread_mutex_lock(&secret_lock);
	for (i = 0; i < n_secrets; i++)
		kit_sfree(secrets[i].data, secrets[i].len);
	free(secrets);
	secrets = NULL;
	n_secrets = cap_secrets = 0;
	pthread_mutex_unlock(&secret_lock);
	/* Blocks the plugin never gave back stay allocated (they were
	 * reported); only the table goes. */
	pthread_mutex_lock(&reg_lock);
	free(reg);
	reg = NULL;
	reg_cap = reg_used = 0;
	pthread_mutex_unlock(&reg_lock);
}

/* ------------------------------------------------------------------------ */
/* The services                                                              */
/* ------------------------------------------------------------------------ */

/* Search a block of the plugin's for secrets.  Parts of it may never have
 * been written: under valgrind that is the plugin's business, not an error
 * of the search. */
static const char *block_secret(const void *p, size_t size)
{
	const char *label;

	VALGRIND_DISABLE_ERROR_REPORTING;
	label = kit_secret_find(p, size);
	VALGRIND_ENABLE_ERROR_REPORTING;
	return label;
}

static void scan_block(const void *p, size_t size, const char *when)
{
	const char *label = block_secret(p, size);

	if (label != NULL)
		kit_finding(KIT_SECRETS,
			    "%s: ordinary memory from host->alloc held %s (secrets belong in "
			    "host->secure_alloc memory)",
			    when, label);
}

void kit_scan_live_allocs(const char *when)
{
	size_t i;

	pthread_mutex_lock(&reg_lock);
	for (i = 0; i < reg_cap; i++)
		if (reg[i].kind == KIND_PLAIN) {
			const char *label = block_secret(reg[i].ptr, reg[i].size);
			if (label != NULL) {
				pthread_mutex_unlock(&reg_lock);
				kit_finding(KIT_SECRETS,
					    "%s: a live host->alloc block holds %s (secrets belong "
					    "in host->secure_alloc memory)",
					    when, label);
				return;
			}
		}
	pthread_mutex_unlock(&reg_lock);
}

static void *h_alloc(envdb_host_ctx *ctx, size_t size)
{
	void *p = malloc(size ? size : 1);

	if (p == NULL)
		return NULL;
	pthread_mutex_lock(&reg_lock);
	reg_add(p, size, KIND_PLAIN);
	pthread_mutex_unlock(&reg_lock);
	return p;
}

static void *h_realloc(envdb_host_ctx *ctx, void *ptr, size_t size)
{
	slot *s;
	void *np;
	size_t old_size;

	if (ptr == NULL)
		return h_alloc(ctx, size);
	pthread_mutex_lock(&reg_lock);
	s = reg_find(ptr);
	if (s == NULL || s->kind != KIND_PLAIN) {
		int kind = s ? s->kind : 0;
		pthread_mutex_unlock(&reg_lock);
		kit_finding(kind == KIND_SECURE ? KIT_SECURE : KIT_MEMORY,
			    "%s: host->realloc() on %s", op_name(),
			    kind == KIND_SECURE ? "memory from host->secure_alloc"
						: "a pointer that is not a live host->alloc block");
		return NULL;
	}
	old_size = s->size;
	pthread_mutex_unlock(&reg_lock);
	scan_block(ptr, old_size, op_name());
	pthread_mutex_lock(&reg_lock);
	s = reg_find(ptr); /* again: the table may have moved meanwhile */
	np = realloc(ptr, size ? size : 1);
	if (np != NULL) {
		if (s != NULL)
			reg_remove(s);
		reg_add(np, size, KIND_PLAIN);
	}
	pthread_mutex_unlock(&reg_lock);
	return np;
}

static void release(void *ptr, int expect_kind)
{
	slot *s;
	size_t size;
	int kind;

	if (ptr == NULL)
		return;
	pthread_mutex_lock(&reg_lock);
	s = reg_find(ptr);
	if (s == NULL) {
		pthread_mutex_unlock(&reg_lock);
		kit_finding(expect_kind == KIND_SECURE ? KIT_SECURE : KIT_MEMORY,
			    "%s: host->%s() on a pointer the host did not hand out (or already "
			    "released)",
			    op_name(), expect_kind == KIND_SECURE ? "secure_free" : "free");
		return;
	}
	size = s->size;
	kind = s->kind;
	reg_remove(s);
	pthread_mutex_unlock(&reg_lock);

	if (kind != expect_kind)
		kit_finding(KIT_SECURE, "%s: %s", op_name(),
			    kind == KIND_SECURE
				    ? "host->free() on memory from host->secure_alloc (it must be "
				      "wiped by host->secure_free)"
				    : "host->secure_free() on memory from host->alloc (allocators "
				      "are never mixed)");
	if (kind == KIND_PLAIN)
		scan_block(ptr, size, op_name());
	else
		sodium_memzero(ptr, size);
	free(ptr);
}

static void h_free(envdb_host_ctx *ctx, void *ptr)
{
	release(ptr, KIND_PLAIN);
}

static void *h_secure_alloc(envdb_host_ctx *ctx, size_t size)
{
	void *p = malloc(size ? size : 1);

	if (p == NULL)
		return NULL;
	pthread_mutex_lock(&reg_lock);
	reg_add(p, size, KIND_SECURE);
	pthread_mutex_unlock(&reg_lock);
	return p;
}

static void h_secure_free(envdb_host_ctx *ctx, void *ptr)
{
	release(ptr, KIND_SECURE);
}

/* Search a message for secrets and poison. */
static void inspect_text(const char *what, const char *text)
{
	const char *label;

	if (text == NULL)
		return;
	label = kit_secret_find(text, strlen(text));
	if (label != NULL)
		kit_finding(KIT_SECRETS, "%s during %s contains %s: \"%s\"", what, op_name(), label,
			    kit_redact(text));
	if (kit_poisoned(text, strlen(text)))
		kit_finding(KIT_OWNERSHIP,
			    "%s during %s shows a borrowed string the host had overwritten after "
			    "an earlier call (a pointer kept past its call): \"%s\"",
			    what, op_name(), kit_redact(text));
}

static void h_log(envdb_host_ctx *ctx, int level, const char *fmt, ...)
{
	char text[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&count_lock);
	n_log++;
	pthread_mutex_unlock(&count_lock);
	if (level < ENVDB_LOG_ERROR || level > ENVDB_LOG_DEBUG)
		kit_finding(KIT_ERRORS, "%s: host->log() with unknown level %d", op_name(), level);
	transcript_add(text);
	inspect_text("a log line", text);
	kit_note("plugin log (%d) during %s: %s", level, op_name(), text);
}

static bool known_error_status(int status)
{
	return status < 0 && kit_status_known(status);
}

static int h_error(envdb_host_ctx *ctx, int status, const char *native, const char *fmt, ...)
{
	kit_report *r = &tls_report;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt ? fmt : "", ap);
	va_end(ap);
	r->count++;
	r->status = status;
	snprintf(r->native, sizeof(r->native), "%s", native ? native : "");
	pthread_mutex_lock(&count_lock);
	n_error++;
	pthread_mutex_unlock(&count_lock);

	if (!known_error_status(status))
		kit_finding(KIT_ERRORS, "%s: host->error() with %s, which is not an error status",
			    op_name(), kit_status_name(status));
	if (r->message[0] == '\0')
		kit_finding(KIT_ERRORS, "%s: host->error() with an empty message", op_name());
	transcript_add(r->message);
	transcript_add(r->native);
	inspect_text("the error message", r->message);
	inspect_text("the native code", r->native);
	kit_note("plugin error during %s: %s [%s%s%s]", op_name(), r->message,
		 kit_status_name(status), native ? ", " : "", native ? native : "");
	return status;
}

static int64_t h_deadline_ms(envdb_host_ctx *ctx)
{
	return tls_deadline;
}

int64_t kit_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1;
}

static int64_t h_now_ms(envdb_host_ctx *ctx)
{
	return kit_now_ms();
}

static int64_t h_wall_s(envdb_host_ctx *ctx)
{
	return (int64_t)time(NULL);
}

static int h_random(envdb_host_ctx *ctx, void *buf, size_t len)
{
	randombytes_buf(buf, len);
	return 0;
}

static struct envdb_host_ctx the_ctx;

/* The deployment the kit's host runs for (ABI 1.1): also in every db_ref
 * and create request it makes, so an adapter with
 * ENVDB_ADAPTER_CAP_DEPLOYMENT sees one consistent deployment. */
const char kit_deployment_id[37] = "c0f0c0f0-1111-4222-8333-444455556666";

static const char *h_deployment_id(envdb_host_ctx *ctx)
{
	(void)ctx;
	return kit_deployment_id;
}

#define HOST_SERVICES                                                                     \
	.ctx = &the_ctx, .alloc = h_alloc, .realloc = h_realloc, .free = h_free,           \
	.secure_alloc = h_secure_alloc, .secure_free = h_secure_free, .log = h_log,         \
	.error = h_error, .deadline_ms = h_deadline_ms, .now_ms = h_now_ms,                 \
	.wall_s = h_wall_s, .random = h_random, .deployment_id = h_deployment_id

static const envdb_host host_table = {
	.struct_size = sizeof(envdb_host),
	.abi_major = ENVDB_ABI_MAJOR,
	.abi_minor = ENVDB_ABI_MINOR,
	HOST_SERVICES,
};

/* A host of a later minor: the same services, a longer struct (the
 * members it would add read as zero here). */
static const struct {
	envdb_host host;
	unsigned char future[64];
} newer_table = {
	.host = {
		.struct_size = sizeof(envdb_host) + 64,
		.abi_major = ENVDB_ABI_MAJOR,
		.abi_minor = ENVDB_ABI_MINOR + 1,
		HOST_SERVICES,
	},
};

const envdb_host *kit_host(void)
{
	return &host_table;
}

const envdb_host *kit_host_newer(void)
{
	return &newer_table.host;
}
