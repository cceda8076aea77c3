/*
 * core/ident.c — checks of the identifiers and text that reach the library
 * from outside (organization ids, slugs, user ids, regions, display names),
 * done at every public entry point before anything reaches a backend, a
 * path or SQL.  A refusal is ENVDB_ERR_INVALID with a message that names
 * the operation, the field and the cause, and shows the offending value
 * escaped (never raw bytes).
 *
 * Identifiers (organization and user ids): 1..ENVDBI_IDENT_MAX bytes of
 * ASCII letters, digits and _ - . @ + :, starting with a letter or a digit,
 * without "..".  That admits UUIDs, slugs, e-mail addresses and "scheme:id"
 * forms, and refuses quotes, spaces and control characters, path
 * separators, "..", and anything that is not ASCII (so no invalid UTF-8).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "store.h"

/* Why `s` is not an identifier, or NULL when it is one. */
static const char *ident_problem(const char *s, char *buf, size_t cap)
{
	size_t i, n;

	if (s == NULL || s[0] == '\0')
		return "it is empty";
	n = strlen(s);
	if (n > ENVDBI_IDENT_MAX) {
		snprintf(buf, cap, "it is %zu bytes long (at most %d)", n, ENVDBI_IDENT_MAX);
		return buf;
	}
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		int alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			    (ch >= '0' && ch <= '9');

		if (i == 0 && !alnum)
			return "it must start with a letter or a digit";
		if (alnum || (ch != '\0' && strchr("_-.@+:", ch) != NULL))
			continue;
		if (ch == '/' || ch == '\\')
			return "path separators are not allowed";
		if (ch >= 0x80)
			return "only ASCII is allowed";
		if (ch < 0x20 || ch == 0x7f)
			return "control characters are not allowed";
		snprintf(buf, cap, "'%c' is not allowed", ch);
		return buf;
	}
	if (strstr(s, "..") != NULL)
		return "'..' is not allowed";
	return NULL;
}

int envdbi_check_ident(const char *op, const char *what, const char *s)
{
	char why[96], q[256];
	const char *p = ident_problem(s, why, sizeof(why));

	if (p == NULL)
		return ENVDB_OK;
	envdbi_quote(q, sizeof(q), s);
	return envdbi_error(ENVDB_ERR_INVALID, NULL,
			    "%s: invalid %s \"%s\": %s (letters, digits and _ - . @ + : only, "
			    "at most %d bytes)",
			    op, what, q, p, ENVDBI_IDENT_MAX);
}

int envdbi_check_env_ref(const char *op, const char *org, const char *slug)
{
	char q[256];
	int rc;

	if ((rc = envdbi_check_ident(op, "organization id", org)) != ENVDB_OK)
		return rc;
	if (envdbi_slug_valid(slug))
		return ENVDB_OK;
	envdbi_quote(q, sizeof(q), slug);
	return envdbi_error(ENVDB_ERR_INVALID, NULL,
			    "%s: invalid slug \"%s\": it does not match ^[a-z0-9][a-z0-9-]{0,62}$",
			    op, q);
}

int envdbi_check_name(const char *op, const char *what, const char *s, size_t max)
{
	char q[256];
	size_t i, n = s ? strlen(s) : 0;
	bool ok = n > 0 && n <= max;

	for (i = 0; ok && i < n; i++) {
		char ch = s[i];

		ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		     (i > 0 && (ch == '-' || ch == '_'));
	}
	if (ok)
		return ENVDB_OK;
	envdbi_quote(q, sizeof(q), s);
	return envdbi_error(ENVDB_ERR_INVALID, NULL,
			    "%s: invalid %s \"%s\": lowercase letters, digits, '-' and '_' only, "
			    "1-%zu bytes",
			    op, what, q, max);
}

/* Length of the valid UTF-8 sequence at s (0: invalid), per RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF. */
static size_t utf8_seq(const unsigned char *s)
{
	unsigned char c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f))
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
			return 0;
		return 4;
	}
	return 0;
}

int envdbi_check_text(const char *op, const char *what, const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	const char *why = NULL;
	char q[256];
	size_t n, i = 0;

	if (s == NULL)
		return ENVDB_OK;
	n = strlen(s);
	if (n > max)
		why = "it is too long";
	while (why == NULL && i < n) {
		size_t k = utf8_seq(p + i);

		if (k == 0)
			why = "it is not valid UTF-8";
		else if (k == 1 && (p[i] < 0x20 || p[i] == 0x7f))
			why = "control characters are not allowed";
		i += k ? k : 1;
	}
	if (why == NULL)
		return ENVDB_OK;
	envdbi_quote(q, sizeof(q), s);
	return envdbi_error(ENVDB_ERR_INVALID, NULL, "%s: invalid %s \"%s\": %s (at most %zu bytes)",
			    op, what, q, why, max);
}

int envdbi_check_env_call(envdb_ctx *ctx, const char *org, const char *slug, const char *op)
{
	int rc;

	if (ctx == NULL || org == NULL || slug == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "%s: missing argument", op);
	if ((rc = envdbi_check_env_ref(op, org, slug)) != ENVDB_OK)
		return rc;
	if (ctx->store == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "%s %s/%s: the context has no control plane open", op, org, slug);
	return ENVDB_OK;
}
