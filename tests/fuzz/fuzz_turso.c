/*
 * tests/fuzz/fuzz_turso.c — libFuzzer harness of the turso adapter's
 * parsing of what the Turso Platform API and a libSQL server answer
 * (plugins/turso): the database object of a create/get answer, the error
 * text of a failed request (JSON or not, secret-bearing or not), the
 * duplicate-name detection, the JWT of a token answer, the result of the
 * readiness SELECT 1, a page of the database list, and the duration and
 * name helpers.  turso_api.c is included so its static parsers are
 * reachable; nothing touches the network.  Any answer must be accepted or
 * refused with a report, never crash or leak; the token never appears in
 * a message.  Seeds: corpus/turso/ (first byte: which parser; then the
 * body).
 */
#include "config.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "turso_api.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char last[4096];
static const char token[] = "TOKEN-aGVsbG8td29ybGQtdG9rZW4";

static void *h_alloc(envdb_host_ctx *c, size_t n)
{
	(void)c;
	return malloc(n ? n : 1);
}
static void *h_realloc(envdb_host_ctx *c, void *p, size_t n)
{
	(void)c;
	return realloc(p, n ? n : 1);
}
static void h_free(envdb_host_ctx *c, void *p)
{
	(void)c;
	free(p);
}
static void h_log(envdb_host_ctx *c, int level, const char *fmt, ...) ENVDB_PRINTF(3, 4);
static void h_log(envdb_host_ctx *c, int level, const char *fmt, ...)
{
	(void)c;
	(void)level;
	(void)fmt;
}
static int h_error(envdb_host_ctx *c, int status, const char *native, const char *fmt, ...)
	ENVDB_PRINTF(4, 5);
static int h_error(envdb_host_ctx *c, int status, const char *native, const char *fmt, ...)
{
	va_list ap;

	(void)c;
	(void)native;
	va_start(ap, fmt);
	vsnprintf(last, sizeof(last), fmt, ap);
	va_end(ap);
	if (strstr(last, token) != NULL)
		abort(); /* the API token leaked into a message */
	return status < 0 ? status : ENVDB_ERR_GENERIC;
}
static int64_t h_zero(envdb_host_ctx *c)
{
	(void)c;
	return 0;
}
static int h_random(envdb_host_ctx *c, void *buf, size_t len)
{
	(void)c;
	memset(buf, 7, len);
	return 0;
}

static envdb_host host = {
	.struct_size = sizeof(envdb_host),
	.abi_major = ENVDB_ABI_MAJOR,
	.abi_minor = ENVDB_ABI_MINOR,
	.alloc = h_alloc,
	.realloc = h_realloc,
	.free = h_free,
	.secure_alloc = h_alloc,
	.secure_free = h_free,
	.log = h_log,
	.error = h_error,
	.deadline_ms = h_zero,
	.now_ms = h_zero,
	.wall_s = h_zero,
	.random = h_random,
};

static int count_name(void *cb_ctx, const char *name)
{
	(void)name;
	(*(size_t *)cb_ctx)++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	turso t;
	turso_resp resp;
	turso_db db;
	char *body, text[512];
	const char *jwt;
	size_t jwt_len, names = 0;
	int64_t ms;

	if (size == 0)
		return 0;
	memset(&t, 0, sizeof(t));
	t.host = &host;
	t.org = (char *)"acme";
	t.group = (char *)"default";
	t.name_prefix = (char *)"env-";
	t.api_token = (char *)token;
	t.api_token_len = sizeof(token) - 1;
	/* the body, NUL-terminated as turso_http delivers it */
	body = malloc(size);
	memcpy(body, data + 1, size - 1);
	body[size - 1] = '\0';
	memset(&resp, 0, sizeof(resp));
	resp.body = body;
	resp.len = size - 1;
	resp.cap = size;
	resp.retry_after_ms = -1;
	resp.status = 200;

	switch (data[0] % 8) {
	case 0: /* create / get answer */
		if (parse_database_answer(&t, "get database env-x", &resp, &db) == ENVDB_OK) {
			if (db.name == NULL || db.db_id == NULL || db.hostname == NULL)
				abort();
			turso_db_clear(&t, &db);
		}
		break;
	case 1: /* error text of a failed request, secret-bearing or not */
		resp.status = 400 + (long)(size % 200);
		turso_error_text(&t, &resp, text, sizeof(text));
		(void)is_duplicate(&t, &resp);
		resp.secure = true;
		resp.status = 200;
		turso_error_text(&t, &resp, text, sizeof(text));
		(void)turso_fail(&t, 0, "create database env-x", &resp);
		break;
	case 2: /* token answer */
		if (find_jwt(body, resp.len, &jwt, &jwt_len) == 0 &&
		    (jwt < body || jwt + jwt_len > body + resp.len || jwt_len == 0))
			abort();
		break;
	case 3: { /* readiness: SELECT 1 */
		json_error_t jerr;
		json_t *root = json_loadb(body, resp.len, 0, &jerr);

		if (root != NULL) {
			(void)check_select1(&t, "probe env-x", root);
			json_decref(root);
		}
		break;
	}
	case 4: { /* a page of the database list */
		json_error_t jerr;
		json_t *root = json_loadb(body, resp.len, 0, &jerr), *dbs, *d, *pg, *next;
		size_t i;

		dbs = root ? jget(root, "databases") : NULL;
		if (json_is_array(dbs))
			json_array_foreach(dbs, i, d)
			{
				const char *name = jstr(d, "Name");

				if (turso_name_is_ours(name, t.name_prefix))
					count_name(&names, name);
			}
		pg = root ? jget(root, "pagination") : NULL;
		next = json_is_object(pg) ? jget(pg, "next") : NULL;
		if (json_is_string(next)) {
			char *c = turso_urlencode(&t, json_string_value(next));

			if (c != NULL)
				h_free(NULL, c);
		}
		json_decref(root);
		break;
	}
	case 5: /* durations and expirations from the manifest */
		(void)turso_parse_duration_ms(&ms, body);
		(void)turso_expiration_valid(body);
		break;
	case 6: /* names */
		(void)turso_name_problem(body, t.org);
		(void)turso_name_is_ours(body, t.name_prefix);
		{
			char name[128];

			(void)turso_name_from_uuid(name, sizeof(name), t.name_prefix, body);
		}
		break;
	default: { /* a database object wherever it sits */
		json_error_t jerr;
		json_t *root = json_loadb(body, resp.len, JSON_DECODE_ANY, &jerr);

		if (root != NULL && db_from_json(&t, root, &db) == ENVDB_OK)
			turso_db_clear(&t, &db);
		json_decref(root);
		break;
	}
	}
	free(body);
	return 0;
}
