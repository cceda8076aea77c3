/*
 * mini_host.c — the minimal envdb host of mini_host.h.  Single-threaded
 * test helper: plain malloc for both allocators (the secure one wipes on
 * free), /dev/urandom for randomness, stderr for logs.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mini_host.h"

static int last_status;
static char last_message[1024];
static long live_allocs, live_secure;

/* Secure allocations carry their size in front so that free can wipe them. */
struct secure_hdr {
	size_t size;
	size_t pad;
};

static void *h_alloc(envdb_host_ctx *ctx, size_t size)
{
	void *p = malloc(size ? size : 1);
	if (p)
		live_allocs++;
	return p;
}

static void *h_realloc(envdb_host_ctx *ctx, void *ptr, size_t size)
{
	void *p = realloc(ptr, size ? size : 1);
	if (p && ptr == NULL)
		live_allocs++;
	return p;
}

static void h_free(envdb_host_ctx *ctx, void *ptr)
{
	if (ptr) {
		live_allocs--;
		free(ptr);
	}
}

static void *h_secure_alloc(envdb_host_ctx *ctx, size_t size)
{
	struct secure_hdr *h = calloc(1, sizeof(*h) + size);
	if (h == NULL)
		return NULL;
	h->size = size;
	live_secure++;
	return h + 1;
}

static void h_secure_free(envdb_host_ctx *ctx, void *ptr)
{
	struct secure_hdr *h;
	volatile unsigned char *p;
	size_t i;

	if (ptr == NULL)
		return;
	h = (struct secure_hdr *)ptr - 1;
	p = ptr;
	for (i = 0; i < h->size; i++)
		p[i] = 0;
	live_secure--;
	free(h);
}

static void h_log(envdb_host_ctx *ctx, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "plugin log[%d]: ", level);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int h_error(envdb_host_ctx *ctx, int status, const char *native, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_message, sizeof(last_message), fmt, ap);
	va_end(ap);
	last_status = status;
	return status;
}

static int64_t h_zero(envdb_host_ctx *ctx)
{
	return 0;
}

static int64_t h_now_ms(envdb_host_ctx *ctx)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t h_wall_s(envdb_host_ctx *ctx)
{
	return (int64_t)time(NULL);
}

static int h_random(envdb_host_ctx *ctx, void *buf, size_t len)
{
	FILE *f = fopen("/dev/urandom", "rb");

	if (f == NULL || fread(buf, 1, len, f) != len) {
		fprintf(stderr, "mini_host: cannot read /dev/urandom\n");
		abort();
	}
	fclose(f);
	return 0;
}

void mini_host_init(envdb_host *host)
{
	memset(host, 0, sizeof(*host));
	host->struct_size = sizeof(*host);
	host->abi_major = ENVDB_ABI_MAJOR;
	host->abi_minor = ENVDB_ABI_MINOR;
	host->ctx = NULL;
	host->alloc = h_alloc;
	host->realloc = h_realloc;
	host->free = h_free;
	host->secure_alloc = h_secure_alloc;
	host->secure_free = h_secure_free;
	host->log = h_log;
	host->error = h_error;
	host->deadline_ms = h_zero;
	host->now_ms = h_now_ms;
	host->wall_s = h_wall_s;
	host->random = h_random;
}

int mini_host_last_status(void)
{
	return last_status;
}

const char *mini_host_last_message(void)
{
	return last_message;
}

void mini_host_clear(void)
{
	last_status = 0;
	last_message[0] = '\0';
}

long mini_host_live_allocs(void)
{
	return live_allocs;
}

long mini_host_live_secure_allocs(void)
{
	return live_secure;
}
