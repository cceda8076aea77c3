/*
 * core/cli_out.c — the one rendering of every object the envdb command
 * prints (declared in core/cli.h, section "Objects"), and the output
 * formats of --output json|tsv|table and --quiet.
 *
 * The JSON vocabulary (envdb(1), JSON OUTPUT) is decided here and only here:
 *  - times are ISO 8601 UTC strings, "2026-12-03T13:55:25Z", or null when
 *    unset; durations are integers whose key says the unit (elapsed_ms);
 *  - an object's own identifier is "id"; a reference to another object is
 *    "<kind>_id" (environment_id, user_id, credential_id); lists of
 *    identifiers are arrays;
 *  - an environment is always the object of envdb_cli_env_json(), under the
 *    key "environment" (or in the array "environments"), with "ref" its
 *    ORG/SLUG and "is_default" a boolean;
 *  - a credential's backend user name is "handle";
 *  - an error is {"error":{"code","status","message"[,"native_code"]}}:
 *    code a machine-readable name (not_found, usage, ...), status the exit
 *    status.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* ------------------------------------------------------------------------ */
/* Scalars                                                                   */
/* ------------------------------------------------------------------------ */

const char *envdb_cli_time_text(char *buf, size_t cap, int64_t t)
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (t <= 0)
		snprintf(buf, cap, "-");
	else if (gmtime_r(&tt, &tm) == NULL || strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, cap, "%lld", (long long)t); /* a time, never "-" (unset) */
	return buf;
}

json_t *envdb_cli_time_json(int64_t t)
{
	char buf[32];

	if (t <= 0)
		return json_null();
	return json_string(envdb_cli_time_text(buf, sizeof(buf), t));
}

json_t *envdb_cli_str_json(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

/* A metadata column (JSON object text) as an object; {} when absent or
 * not an object. */
static json_t *meta_json(const char *text)
{
	json_t *m = text != NULL ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;

	if (!json_is_object(m)) {
		json_decref(m);
		m = json_object();
	}
	return m;
}

/* "a,b,c" → ["a","b","c"]; "" → []. */
json_t *envdb_cli_id_list_json(const char *csv)
{
	json_t *a = json_array();
	const char *p = csv;

	while (a != NULL && p != NULL && *p != '\0') {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		while (len > 0 && *p == ' ') {
			p++;
			len--;
		}
		if (len > 0)
			json_array_append_new(a, json_stringn(p, len));
		p = end ? end + 1 : NULL;
	}
	return a;
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

const char *envdb_cli_error_code(int status)
{
	switch (status) {
	case ENVDB_OK:
		return "ok";
	case ENVDB_ERR_MISUSE:
		return "misuse";
	case ENVDB_ERR_NOT_FOUND:
		return "not_found";
	case ENVDB_ERR_EXISTS:
		return "exists";
	case ENVDB_ERR_AUTH:
		return "auth";
	case ENVDB_ERR_PERMISSION:
		return "permission";
	case ENVDB_ERR_UNAVAILABLE:
		return "unavailable";
	case ENVDB_ERR_TIMEOUT:
		return "timeout";
	case ENVDB_ERR_INTEGRITY:
		return "integrity";
	case ENVDB_ERR_BUFFER_TOO_SMALL:
		return "buffer_too_small";
	case ENVDB_ERR_NOT_SUPPORTED:
		return "not_supported";
	case ENVDB_ERR_NOMEM:
		return "nomem";
	case ENVDB_ERR_IO:
		return "io";
	case ENVDB_ERR_CONFIG:
		return "config";
	case ENVDB_ERR_ABI:
		return "abi";
	case ENVDB_ERR_INVALID:
		return "invalid";
	case ENVDB_ERR_STATE:
		return "state";
	case ENVDB_ERR_BUSY:
		return "busy";
	case ENVDB_ERR_GENERIC:
	default:
		return "generic";
	}
}

json_t *envdb_cli_error_json(const char *code, int exit_status, int envdb_status,
			     const char *message, const char *native)
{
	json_t *e = json_pack("{s:s, s:i, s:s, s:i}", "code", code, "status", exit_status,
			      "message", message ? message : "", "envdb_status", envdb_status);

	if (e != NULL && native != NULL && native[0] != '\0')
		json_object_set_new(e, "native_code", json_string(native));
	return e;
}

/* ------------------------------------------------------------------------ */
/* Objects                                                                   */
/* ------------------------------------------------------------------------ */

json_t *envdb_cli_env_json(const envdb_environment *e)
{
	json_t *o;

	if (e == NULL)
		return json_null();
	if ((o = json_object()) == NULL)
		return NULL;
	json_object_set_new(o, "id", json_string(e->id));
	json_object_set_new(o, "ref", json_sprintf("%s/%s", e->organization_id, e->slug));
	json_object_set_new(o, "organization_id", json_string(e->organization_id));
	json_object_set_new(o, "slug", json_string(e->slug));
	json_object_set_new(o, "display_name", envdb_cli_str_json(e->display_name));
	json_object_set_new(o, "env_type", envdb_cli_str_json(e->env_type));
	json_object_set_new(o, "is_default", json_boolean(e->is_default));
	json_object_set_new(o, "status", envdb_cli_str_json(e->status));
	json_object_set_new(o, "region", envdb_cli_str_json(e->region));
	json_object_set_new(o, "plan", envdb_cli_str_json(e->plan));
	json_object_set_new(o, "created_by", envdb_cli_str_json(e->created_by));
	json_object_set_new(o, "created_at", envdb_cli_time_json(e->created_at));
	json_object_set_new(o, "updated_at", envdb_cli_time_json(e->updated_at));
	json_object_set_new(o, "metadata", meta_json(e->metadata));
	json_object_set_new(o, "lease_expires_at", envdb_cli_time_json(e->lease_expires_at));
	json_object_set_new(o, "pending_database_name",
			    envdb_cli_str_json(e->pending_database_name));
	json_object_set_new(o, "pending_driver", envdb_cli_str_json(e->pending_driver));
	json_object_set_new(o, "delete_after", envdb_cli_time_json(e->delete_after));
	return o;
}

json_t *envdb_cli_db_json(const envdb_database *d)
{
	json_t *o;

	if (d == NULL)
		return json_null();
	if ((o = json_object()) == NULL)
		return NULL;
	json_object_set_new(o, "id", json_string(d->id));
	json_object_set_new(o, "environment_id", json_string(d->environment_id));
	json_object_set_new(o, "database_name", json_string(d->database_name));
	json_object_set_new(o, "database_url", envdb_cli_str_json(d->database_url));
	json_object_set_new(o, "driver", envdb_cli_str_json(d->driver));
	json_object_set_new(o, "region", envdb_cli_str_json(d->region));
	json_object_set_new(o, "storage_limit_mb", json_integer(d->storage_limit_mb));
	json_object_set_new(o, "provisioned_at", envdb_cli_time_json(d->provisioned_at));
	json_object_set_new(o, "last_accessed_at", envdb_cli_time_json(d->last_accessed_at));
	json_object_set_new(o, "metadata", meta_json(d->metadata));
	return o;
}

/* Never the ciphertext (useless to a reader of the output). */
json_t *envdb_cli_cred_json(const envdb_credential *c)
{
	json_t *o;

	if (c == NULL)
		return json_null();
	if ((o = json_object()) == NULL)
		return NULL;
	json_object_set_new(o, "id", json_string(c->id));
	json_object_set_new(o, "environment_database_id", json_string(c->environment_database_id));
	json_object_set_new(o, "authorization", envdb_cli_str_json(c->authorization));
	json_object_set_new(o, "status", envdb_cli_str_json(c->status));
	json_object_set_new(o, "handle", envdb_cli_str_json(c->handle));
	json_object_set_new(o, "encryption_key_id", envdb_cli_str_json(c->key_id));
	json_object_set_new(o, "created_at", envdb_cli_time_json(c->created_at));
	json_object_set_new(o, "expires_at", envdb_cli_time_json(c->expires_at));
	json_object_set_new(o, "revoked_at", envdb_cli_time_json(c->revoked_at));
	return o;
}

json_t *envdb_cli_member_json(const envdb_member *m)
{
	if (m == NULL)
		return json_null();
	return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "id", m->id, "environment_id",
			 m->environment_id, "user_id", m->user_id, "role", m->role, "invited_by",
			 envdb_cli_str_json(m->invited_by), "created_at",
			 envdb_cli_time_json(m->created_at), "updated_at",
			 envdb_cli_time_json(m->updated_at));
}

json_t *envdb_cli_key_json(const char *id, bool current, int64_t created_at)
{
	return json_pack("{s:s, s:b, s:o}", "id", id, "current", current, "created_at",
			 envdb_cli_time_json(created_at));
}

json_t *envdb_cli_violation_json(const envdb_violation *v)
{
	return json_pack("{s:s, s:s, s:o, s:s}", "object", v->object, "invariant", v->invariant,
			 "row_ids", envdb_cli_id_list_json(v->row_ids), "message", v->message);
}

/* ------------------------------------------------------------------------ */
/* Tables: --output table (aligned, headers) and tsv (header line, escaped)  */
/* ------------------------------------------------------------------------ */

struct envdb_cli_table {
	size_t ncols;
	size_t id_col; /* what --quiet prints */
	char **cells;  /* rows * ncols, the first row the headers */
	size_t nrows, cap;
	bool failed; /* a row or a cell could not be stored: never printed short */
};

envdb_cli_table *envdb_cli_table_new(size_t id_col, const char *const *headers)
{
	envdb_cli_table *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	while (headers[t->ncols] != NULL)
		t->ncols++;
	t->id_col = id_col < t->ncols ? id_col : 0;
	envdb_cli_table_row(t, headers);
	return t;
}

void envdb_cli_table_row(envdb_cli_table *t, const char *const *cells)
{
	size_t i;

	if (t == NULL)
		return;
	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **nc = realloc(t->cells, cap * t->ncols * sizeof(*nc));

		if (nc == NULL) {
			t->failed = true;
			return;
		}
		t->cells = nc;
		t->cap = cap;
	}
	for (i = 0; i < t->ncols; i++) {
		char *c = strdup(cells[i] != NULL && cells[i][0] != '\0' ? cells[i] : "-");

		t->failed = t->failed || c == NULL;
		t->cells[t->nrows * t->ncols + i] = c;
	}
	t->nrows++;
}

void envdb_cli_table_rowf(envdb_cli_table *t, ...)
{
	const char *cells[32];
	va_list ap;
	size_t i;

	if (t == NULL)
		return;
	if (t->ncols > 32) {
		t->failed = true;
		return;
	}
	va_start(ap, t);
	for (i = 0; i < t->ncols; i++)
		cells[i] = va_arg(ap, const char *);
	va_end(ap);
	envdb_cli_table_row(t, cells);
}

size_t envdb_cli_table_rows(const envdb_cli_table *t)
{
	return t != NULL && t->nrows > 0 ? t->nrows - 1 : 0;
}

/* True when s starts a C1 control character in UTF-8 (U+0080..U+009F,
 * bytes C2 80..C2 9F): a terminal reads U+009B as CSI and U+009D as OSC,
 * as it reads ESC [ and ESC ]. */
static bool is_c1(const unsigned char *s)
{
	return s[0] == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f;
}

/* `s` with tab, newline, carriage return, backslash and other control
 * bytes (C0, DEL, and the two bytes of a C1 character) escaped (\t \n \r
 * \\ \xNN): one cell stays one field on one line, and nothing reaches a
 * terminal as a control sequence. */
static void put_cell(FILE *f, const char *s, int pad)
{
	int w = 0;

	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\t')
			w += fprintf(f, "\\t");
		else if (c == '\n')
			w += fprintf(f, "\\n");
		else if (c == '\r')
			w += fprintf(f, "\\r");
		else if (c == '\\')
			w += fprintf(f, "\\\\");
		else if (c < 0x20 || c == 0x7f)
			w += fprintf(f, "\\x%02x", c);
		else if (is_c1((const unsigned char *)s)) {
			w += fprintf(f, "\\x%02x\\x%02x", c, (unsigned char)s[1]);
			s++;
		} else {
			fputc(c, f);
			w++;
		}
	}
	for (; w < pad; w++)
		fputc(' ', f);
}

static size_t cell_width(const char *s)
{
	size_t w = 0;

	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\t' || c == '\n' || c == '\r' || c == '\\')
			w += 2;
		else if (c < 0x20 || c == 0x7f)
			w += 4;
		else if (is_c1((const unsigned char *)s)) {
			w += 8;
			s++;
		} else if ((c & 0xc0) != 0x80) /* one column per UTF-8 character */
			w++;
	}
	return w;
}

int envdb_cli_table_print(envdb_cli *cli, envdb_cli_table *t)
{
	size_t r, c, *width;

	if (t == NULL || t->failed) {
		/* a row left out would be a listing that says something untrue */
		envdb_cli_table_free(t);
		envdb_cli_error(cli, "out of memory building the output");
		return EX_OSERR;
	}
	width = calloc(t->ncols, sizeof(*width));
	for (r = 0; width != NULL && r < t->nrows; r++)
		for (c = 0; c < t->ncols; c++) {
			size_t w = cell_width(t->cells[r * t->ncols + c]);
			if (w > width[c])
				width[c] = w;
		}
	for (r = 0; r < t->nrows; r++) {
		if (cli->quiet) {
			const char *id = t->cells[r * t->ncols + t->id_col];

			if (r > 0 && id != NULL && strcmp(id, "-") != 0) {
				put_cell(stdout, id, 0);
				fputc('\n', stdout);
			}
			continue;
		}
		if (cli->json)
			break;
		if (cli->output == ENVDB_CLI_OUT_TABLE && r == 0 && t->nrows == 1)
			break; /* no rows: no header either */
		for (c = 0; c < t->ncols; c++) {
			bool last = c + 1 == t->ncols;

			if (cli->output == ENVDB_CLI_OUT_TSV) {
				put_cell(stdout, t->cells[r * t->ncols + c], 0);
				fputc(last ? '\n' : '\t', stdout);
			} else {
				put_cell(stdout, t->cells[r * t->ncols + c],
					 last || width == NULL ? 0 : (int)width[c]);
				fputs(last ? "\n" : "  ", stdout);
			}
		}
	}
	free(width);
	envdb_cli_table_free(t);
	return EX_OK;
}

void envdb_cli_table_free(envdb_cli_table *t)
{
	size_t i;

	if (t == NULL)
		return;
	/* a cell can hold a secret (resolve --reveal): wiped before freed */
	for (i = 0; i < t->nrows * t->ncols; i++) {
		if (t->cells[i] != NULL)
			explicit_bzero(t->cells[i], strlen(t->cells[i]));
		free(t->cells[i]);
	}
	free(t->cells);
	free(t);
}

/* ------------------------------------------------------------------------ */
/* Table rows of the objects                                                 */
/* ------------------------------------------------------------------------ */

envdb_cli_table *envdb_cli_env_table(void)
{
	static const char *const h[] = {"ENVIRONMENT", "TYPE",    "STATUS", "PLAN", "REGION",
					"DEFAULT",     "CREATED", "ID",     NULL};
	return envdb_cli_table_new(0, h);
}

void envdb_cli_env_row(envdb_cli_table *t, const envdb_environment *e)
{
	char ref[400], t1[32];

	snprintf(ref, sizeof(ref), "%s/%s", e->organization_id, e->slug);
	envdb_cli_table_rowf(t, ref, e->env_type, e->status, e->plan, e->region,
			     e->is_default ? "yes" : "no",
			     envdb_cli_time_text(t1, sizeof(t1), e->created_at), e->id);
}

envdb_cli_table *envdb_cli_cred_table(void)
{
	static const char *const h[] = {"ID",      "AUTHORIZATION", "STATUS",  "HANDLE",
					"CREATED", "EXPIRES",       "REVOKED", NULL};
	return envdb_cli_table_new(0, h);
}

void envdb_cli_cred_row(envdb_cli_table *t, const envdb_credential *c)
{
	char t1[32], t2[32], t3[32];

	envdb_cli_table_rowf(t, c->id, c->authorization, c->status, c->handle,
			     envdb_cli_time_text(t1, sizeof(t1), c->created_at),
			     envdb_cli_time_text(t2, sizeof(t2), c->expires_at),
			     envdb_cli_time_text(t3, sizeof(t3), c->revoked_at));
}

envdb_cli_table *envdb_cli_member_table(void)
{
	static const char *const h[] = {"USER", "ROLE", "INVITED BY", "SINCE", "UPDATED", NULL};
	return envdb_cli_table_new(0, h);
}

void envdb_cli_member_row(envdb_cli_table *t, const envdb_member *m)
{
	char t1[32], t2[32];

	envdb_cli_table_rowf(t, m->user_id, m->role, m->invited_by,
			     envdb_cli_time_text(t1, sizeof(t1), m->created_at),
			     envdb_cli_time_text(t2, sizeof(t2), m->updated_at));
}

envdb_cli_table *envdb_cli_field_table(void)
{
	static const char *const h[] = {"FIELD", "VALUE", NULL};
	return envdb_cli_table_new(1, h);
}
