/*
 * plugins/turso/turso_names.c — database names: derived deterministically
 * from the environment UUID ("<prefix><32 lowercase hex>"), checked against
 * Turso's rules before any request, and recognised when listing.
 *
 * Turso's documented rule is "only lowercase letters, numbers, dashes, no
 * longer than 64 characters"; the hostname is "<database>-<organization>.…",
 * one DNS label, so "<database>-<organization>" must also fit in 63
 * characters (the server rejects longer names with a confusing bound).
 */
#include <ctype.h>
#include <string.h>

#include "turso.h"

int turso_name_from_uuid(char *out, size_t cap, const char *prefix, const char *uuid)
{
	char hex[TURSO_UUID_HEX + 1];
	size_t n = 0, i, plen = strlen(prefix);

	if (uuid == NULL)
		return ENVDB_ERR_INVALID;
	for (i = 0; uuid[i] != '\0'; i++) {
		unsigned char c = (unsigned char)uuid[i];
		if (c == '-') {
			/* dashes only at the canonical 8-4-4-4-12 places */
			if (i != 8 && i != 13 && i != 18 && i != 23)
				return ENVDB_ERR_INVALID;
			continue;
		}
		if (!isxdigit(c) || n >= TURSO_UUID_HEX)
			return ENVDB_ERR_INVALID;
		hex[n++] = (char)tolower(c);
	}
	if (n != TURSO_UUID_HEX || (i != TURSO_UUID_HEX && i != TURSO_UUID_HEX + 4))
		return ENVDB_ERR_INVALID;
	hex[n] = '\0';
	if (plen + n + 1 > cap)
		return ENVDB_ERR_BUFFER_TOO_SMALL;
	memcpy(out, prefix, plen);
	memcpy(out + plen, hex, n + 1);
	return ENVDB_OK;
}

const char *turso_name_problem(const char *name, const char *org)
{
	size_t n, i;

	if (name == NULL || name[0] == '\0')
		return "the name is empty";
	n = strlen(name);
	if (n > TURSO_NAME_MAX)
		return "the name is longer than 64 characters";
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (!(islower(c) || isdigit(c) || c == '-'))
			return "the name may contain only lowercase letters, digits and dashes";
	}
	if (name[0] == '-' || name[n - 1] == '-')
		return "the name may not start or end with a dash";
	if (org != NULL && n + 1 + strlen(org) > TURSO_LABEL_MAX)
		return "<name>-<organization> exceeds the 63-character hostname label";
	return NULL;
}

bool turso_name_is_ours(const char *name, const char *prefix)
{
	size_t plen = strlen(prefix), i;

	if (name == NULL || strncmp(name, prefix, plen) != 0 ||
	    strlen(name) != plen + TURSO_UUID_HEX)
		return false;
	for (i = plen; name[i] != '\0'; i++)
		if (!(isdigit((unsigned char)name[i]) || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return true;
}
