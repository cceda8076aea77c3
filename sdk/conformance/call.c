/*
 * sdk/conformance/call.c — how the kit calls into the plugin.
 *
 * Inputs are borrowed: each string the plugin sees is a fresh copy that
 * is overwritten with KIT_POISON as soon as the call returns, so a plugin
 * that keeps a pointer past its call later reads (and shows) the poison.
 * Poisoned buffers stay allocated until the end of the run: a kept pointer
 * reads poison, deterministically, instead of crashing on freed memory.
 *
 * Outputs are envdb_buffers with a guard zone after cap, checked after
 * every call.  Around every call the wrappers serialize (unless the plugin
 * is thread-safe, as the host does), reset the thread's error report, and
 * afterwards check that a failure was reported with the status returned.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "kit.h"

#define GUARD 32
#define FILL 0xA5

/* ------------------------------------------------------------------------ */
/* Borrowed inputs                                                           */
/* ------------------------------------------------------------------------ */

typedef struct grave {
	void *p;
	size_t n;
	bool poisoned;
} grave;

static pthread_mutex_t grave_lock = PTHREAD_MUTEX_INITIALIZER;
static grave *graves;
static size_t n_graves, cap_graves;
/* The borrowed buffers of the call in flight, per thread: [from, n_graves)
 * is not enough with several threads, so each grave records its thread. */
static _Thread_local size_t tls_pending[64];
static _Thread_local size_t tls_n_pending;

static void add_grave(void *p, size_t n, bool poison_it)
{
	pthread_mutex_lock(&grave_lock);
	if (n_graves == cap_graves) {
		grave *v;

		cap_graves = cap_graves ? cap_graves * 2 : 256;
		v = realloc(graves, cap_graves * sizeof(*v));
		if (v == NULL) {
			fprintf(stderr, "envdb-conformance: out of memory\n");
			abort();
		}
		graves = v;
	}
	graves[n_graves].p = p;
	graves[n_graves].n = n;
	graves[n_graves].poisoned = !poison_it;
	if (poison_it && tls_n_pending < sizeof(tls_pending) / sizeof(tls_pending[0]))
		tls_pending[tls_n_pending++] = n_graves;
	n_graves++;
	pthread_mutex_unlock(&grave_lock);
}

void kit_borrow_raw(void *p, size_t n)
{
	add_grave(p, n, true);
}

void kit_keep(void *p)
{
	add_grave(p, 0, false);
}

const char *kit_borrow(const char *s)
{
	char *p;
	size_t n;

	if (s == NULL)
		return NULL;
	n = strlen(s) + 1;
	p = kit_xmalloc(n);
	memcpy(p, s, n);
	kit_borrow_raw(p, n);
	return p;
}

/* Overwrite a string buffer with the poison, keeping it a C string of the
 * same length so that a plugin reading it sees text, not garbage. */
static void poison(char *p, size_t n)
{
	static const char pat[] = KIT_POISON;
	size_t i;

	if (n == 0)
		return;
	for (i = 0; i + 1 < n; i++)
		p[i] = pat[i % (sizeof(pat) - 1)];
	p[n - 1] = '\0';
}

void kit_poison_borrowed(void)
{
	size_t i;

	pthread_mutex_lock(&grave_lock);
	for (i = 0; i < tls_n_pending; i++) {
		grave *g = &graves[tls_pending[i]];
		if (!g->poisoned) {
			poison(g->p, g->n);
			g->poisoned = true;
		}
	}
	tls_n_pending = 0;
	pthread_mutex_unlock(&grave_lock);
}

void kit_graveyard_free(void)
{
	size_t i;

	pthread_mutex_lock(&grave_lock);
	for (i = 0; i < n_graves; i++)
		free(graves[i].p);
	free(graves);
	graves = NULL;
	n_graves = cap_graves = 0;
	pthread_mutex_unlock(&grave_lock);
}

/* ------------------------------------------------------------------------ */
/* Output buffers                                                            */
/* ------------------------------------------------------------------------ */

void kit_buf_init(kit_buf *kb, size_t cap, bool secure)
{
	size_t total = cap + GUARD;

	kb->cap = cap;
	kb->secure = secure;
	kb->b.struct_size = sizeof(envdb_buffer);
	kb->b.data = secure ? kit_smalloc(total) : kit_xmalloc(total);
	memset(kb->b.data, FILL, total);
	kb->b.cap = cap;
	kb->b.len = 0;
	if (cap == 0) {
		/* "data may be NULL when cap is 0": test the NULL case. */
		if (secure)
			kit_sfree(kb->b.data, total);
		else
			free(kb->b.data);
		kb->b.data = NULL;
	}
	kb->orig = kb->b.data;
}

void kit_buf_free(kit_buf *kb)
{
	if (kb->orig == NULL)
		return;
	if (kb->secure)
		kit_sfree(kb->orig, kb->cap + GUARD);
	else
		free(kb->orig);
	kb->orig = kb->b.data = NULL;
}

bool kit_buf_untouched(const kit_buf *kb)
{
	size_t i;

	if (kb->orig == NULL)
		return true;
	for (i = 0; i < kb->cap + GUARD; i++)
		if ((unsigned char)kb->orig[i] != FILL)
			return false;
	return true;
}

void kit_buf_verify(kit_buf *kb, int rc, const char *op, const char *what, bool text)
{
	size_t i;

	if (kb->orig != NULL)
		for (i = kb->cap; i < kb->cap + GUARD; i++)
			if ((unsigned char)kb->orig[i] != FILL) {
				kit_finding(KIT_BUFFERS,
					    "%s wrote past the end of the %s buffer (cap %zu)", op,
					    what, kb->cap);
				break;
			}
	if (kb->b.data != kb->orig || kb->b.cap != kb->cap) {
		kit_finding(KIT_BUFFERS, "%s changed data/cap of the %s buffer", op, what);
		kb->b.data = kb->orig;
		kb->b.cap = kb->cap;
		return;
	}
	if (rc == ENVDB_OK) {
		if (kb->b.len + 1 > kb->cap)
			kit_finding(KIT_BUFFERS,
				    "%s succeeded with len %zu in the %s buffer of cap %zu (no room "
				    "for the value and its NUL)",
				    op, kb->b.len, what, kb->cap);
		else if (kb->b.data[kb->b.len] != '\0')
			kit_finding(KIT_BUFFERS, "%s: the %s value is not NUL-terminated at len",
				    op, what);
		else if (text && strlen(kb->b.data) != kb->b.len)
			kit_finding(KIT_BUFFERS,
				    "%s: the %s text has a NUL inside (strlen %zu, len %zu)", op,
				    what, strlen(kb->b.data), kb->b.len);
		else if (kit_poisoned(kb->b.data, kb->b.len))
			kit_finding(KIT_OWNERSHIP,
				    "%s: the %s output is made of a borrowed string the host had "
				    "overwritten after an earlier call (a pointer kept past its "
				    "call)",
				    op, what);
	}
}

/* ------------------------------------------------------------------------ */
/* Call bookkeeping                                                          */
/* ------------------------------------------------------------------------ */

static pthread_mutex_t instance_lock = PTHREAD_MUTEX_INITIALIZER;
static bool thread_safe;

void kit_set_thread_safe(bool ts)
{
	thread_safe = ts;
}

/* Standard output during calls: fd 1 points at an unlinked scratch file
 * while any call is in flight; what the plugin wrote there is a finding
 * (a plugin that prints breaks `envdb --json`). */
static pthread_mutex_t stdout_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned stdout_users;
static int stdout_saved = -1, stdout_scratch = -1;

void kit_stdout_begin(void)
{
	pthread_mutex_lock(&stdout_lock);
	if (stdout_scratch < 0) {
		const char *tmp = getenv("TMPDIR");
		char path[4096];
		snprintf(path, sizeof(path), "%s/envdb-conformance-stdout-XXXXXX",
			 tmp && tmp[0] ? tmp : "/tmp");
		if ((stdout_scratch = mkstemp(path)) >= 0)
			unlink(path);
	}
	if (stdout_users++ == 0 && stdout_scratch >= 0) {
		fflush(stdout);
		stdout_saved = dup(STDOUT_FILENO);
		dup2(stdout_scratch, STDOUT_FILENO);
	}
	pthread_mutex_unlock(&stdout_lock);
}

void kit_stdout_end(const char *op)
{
	char got[128];
	off_t n = 0;
	ssize_t r;

	pthread_mutex_lock(&stdout_lock);
	if (stdout_users > 0 && --stdout_users == 0 && stdout_saved >= 0) {
		fflush(stdout); /* what the plugin printed with stdio */
		dup2(stdout_saved, STDOUT_FILENO);
		close(stdout_saved);
		stdout_saved = -1;
		n = lseek(stdout_scratch, 0, SEEK_END);
		if (n > 0) {
			r = pread(stdout_scratch, got, sizeof(got) - 1, 0);
			got[r > 0 ? r : 0] = '\0';
			for (r = 0; got[r] != '\0'; r++)
				if ((unsigned char)got[r] < 0x20)
					got[r] = ' ';
			kit_finding(KIT_STDOUT,
				    "%s wrote %lld byte(s) to standard output (\"%s\"); a plugin "
				    "reports through the host, never on stdout",
				    op, (long long)n, got);
			if (ftruncate(stdout_scratch, 0) != 0)
				n = 0;
			lseek(stdout_scratch, 0, SEEK_SET);
		}
	}
	pthread_mutex_unlock(&stdout_lock);
}

void kit_call_begin(const char *op)
{
	if (!thread_safe)
		pthread_mutex_lock(&instance_lock);
	kit_report_reset();
	kit_set_current_op(op);
	kit_stdout_begin();
}

static bool is_status(int rc)
{
	return kit_status_known(rc);
}

int kit_call_end(const char *op, int rc)
{
	const kit_report *r = kit_report_get();

	kit_stdout_end(op);
	if (!thread_safe)
		pthread_mutex_unlock(&instance_lock);
	kit_poison_borrowed();
	if (!is_status(rc))
		kit_finding(KIT_STATUS, "%s returned %d, which is not an envdb_status", op, rc);
	if (rc < 0 && rc != ENVDB_ERR_BUFFER_TOO_SMALL) {
		if (r->count == 0)
			kit_finding(KIT_ERRORS,
				    "%s returned %s without reporting it through host->error", op,
				    kit_status_name(rc));
		else if (r->status != rc)
			kit_finding(KIT_ERRORS, "%s returned %s but its last report said %s: \"%s\"",
				    op, kit_status_name(rc), kit_status_name(r->status),
				    kit_redact(r->message));
	}
	kit_set_current_op("(between calls)");
	return rc;
}

/* ------------------------------------------------------------------------ */

void kit_uuid(char out[37])
{
	unsigned char b[16];

	randombytes_buf(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
		 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
		 b[14], b[15]);
}
