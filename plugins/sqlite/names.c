/*
 * plugins/sqlite/names.c — how the sqlite adapter names things: environment
 * ids are validated as UUIDs before anything is derived from them, the
 * database name is "env_" + the 32 hex digits of the UUID (deterministic,
 * so a retry or a reconcile addresses the same file), and paths are checked
 * once so that URLs and metadata never need escaping.
 */
#include "config.h"

#include <ctype.h>
#include <string.h>

#include <sqlite3.h>

#include "sqlite_adapter.h"

const char *const sqla_side_suffixes[SQLA_N_SIDE_FILES] = {"-wal", "-shm", "-journal"};

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int sqla_name_from_id(char *name, const sqla *a, const char *op, const char *environment_id)
{
	/* 8-4-4-4-12 hex digits; dashes exactly at these offsets. */
	static const int dashes[] = {8, 13, 18, 23};
	size_t i, d = 0, o = 4;

	if (environment_id == NULL)
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: no environment id given", op);
	if (strlen(environment_id) != 36)
		goto invalid;
	memcpy(name, "env_", 4);
	for (i = 0; i < 36; i++) {
		if (d < 4 && (int)i == dashes[d]) {
			if (environment_id[i] != '-')
				goto invalid;
			d++;
			continue;
		}
		if (hexval(environment_id[i]) < 0)
			goto invalid;
		name[o++] = (char)tolower((unsigned char)environment_id[i]);
	}
	name[o] = '\0';
	return ENVDB_OK;
invalid:
	/* The id is not a secret; it is printed only when it is short and
	 * printable, so a garbage argument cannot flood or corrupt the log. */
	for (i = 0; environment_id[i] != '\0' && i < 64; i++)
		if (!isprint((unsigned char)environment_id[i]))
			break;
	if (environment_id[i] == '\0')
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: environment id '%s' is not a uuid", op,
				      environment_id);
	return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
			      "%s: environment id is not a uuid", op);
}

int sqla_name_is_valid(const char *s)
{
	size_t i;

	if (s == NULL || strncmp(s, "env_", 4) != 0 || strlen(s) != SQLA_NAME_LEN)
		return 0;
	for (i = 4; i < SQLA_NAME_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

int sqla_name_from_ref(char *name, const sqla *a, const char *op, const envdb_db_ref *db)
{
	const char *given;
	int rc;

	if (db == NULL)
		return a->host->error(a->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "%s: no database reference given", op);
	given = ENVDB_STRUCT_HAS(db, envdb_db_ref, database_name) ? db->database_name : NULL;
	if (db->environment_id != NULL) {
		rc = sqla_name_from_id(name, a, op, db->environment_id);
		if (rc != ENVDB_OK)
			return rc;
		if (given != NULL && strcmp(given, name) != 0)
			return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
					      "%s: database name does not belong to environment "
					      "%s (expected %s)",
					      op, db->environment_id, name);
		return ENVDB_OK;
	}
	if (!sqla_name_is_valid(given))
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: neither an environment id nor a database name of "
				      "the form env_<32 hex digits> given",
				      op);
	memcpy(name, given, SQLA_NAME_LEN + 1);
	return ENVDB_OK;
}

char *sqla_strdup(const sqla *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = a->host->alloc(a->host->ctx, n);

	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

int sqla_path_is_plain(const char *path)
{
	const unsigned char *p;

	for (p = (const unsigned char *)path; *p != '\0'; p++)
		if (*p < 0x20 || *p > 0x7e || strchr("\"\\?#%", *p) != NULL)
			return 0;
	return 1;
}

const char *sqla_sqlite_code_name(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK: return "SQLITE_OK";
	case SQLITE_ERROR: return "SQLITE_ERROR";
	case SQLITE_INTERNAL: return "SQLITE_INTERNAL";
	case SQLITE_PERM: return "SQLITE_PERM";
	case SQLITE_ABORT: return "SQLITE_ABORT";
	case SQLITE_BUSY: return "SQLITE_BUSY";
	case SQLITE_LOCKED: return "SQLITE_LOCKED";
	case SQLITE_NOMEM: return "SQLITE_NOMEM";
	case SQLITE_READONLY: return "SQLITE_READONLY";
	case SQLITE_INTERRUPT: return "SQLITE_INTERRUPT";
	case SQLITE_IOERR: return "SQLITE_IOERR";
	case SQLITE_CORRUPT: return "SQLITE_CORRUPT";
	case SQLITE_NOTFOUND: return "SQLITE_NOTFOUND";
	case SQLITE_FULL: return "SQLITE_FULL";
	case SQLITE_CANTOPEN: return "SQLITE_CANTOPEN";
	case SQLITE_PROTOCOL: return "SQLITE_PROTOCOL";
	case SQLITE_SCHEMA: return "SQLITE_SCHEMA";
	case SQLITE_TOOBIG: return "SQLITE_TOOBIG";
	case SQLITE_CONSTRAINT: return "SQLITE_CONSTRAINT";
	case SQLITE_MISMATCH: return "SQLITE_MISMATCH";
	case SQLITE_MISUSE: return "SQLITE_MISUSE";
	case SQLITE_NOLFS: return "SQLITE_NOLFS";
	case SQLITE_AUTH: return "SQLITE_AUTH";
	case SQLITE_RANGE: return "SQLITE_RANGE";
	case SQLITE_NOTADB: return "SQLITE_NOTADB";
	default: return "SQLITE_UNKNOWN";
	}
}
