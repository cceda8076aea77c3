/*
 * plugins/postgres/names.c — how the postgres adapter names things.
 * Environment ids are validated as UUIDs before anything is derived from
 * them; the database is prefix + the 32 hex digits of the id (deterministic,
 * so a retry or a reconcile addresses the same database, and the id can be
 * recovered from the name); roles are the database name plus a fixed
 * suffix.  Every name is [a-z0-9_] and at most 62 bytes, and it is still
 * always quoted with PQescapeIdentifier where it reaches SQL.
 *
 * Ownership markers ("envdb:<environment id>" comments) and password
 * fingerprints (" fp:<16 hex>" in a login role's comment) are built and
 * checked here, as are the URL and the metadata, whose parts never need
 * escaping.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "pg_adapter.h"

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parse a UUID (8-4-4-4-12 hex, either case) into 32 lowercase hex digits. */
static int uuid_hex(char hex[PGA_HEX_LEN + 1], const char *id)
{
	size_t i, o = 0;

	if (id == NULL || strlen(id) != 36)
		return 0;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (id[i] != '-')
				return 0;
			continue;
		}
		if (hexval((unsigned char)id[i]) < 0)
			return 0;
		hex[o++] = (char)tolower((unsigned char)id[i]);
	}
	hex[o] = '\0';
	return 1;
}

static void names_fill(pga_names *n, const pga *a, const char hex[PGA_HEX_LEN + 1])
{
	memcpy(n->hex, hex, PGA_HEX_LEN + 1);
	snprintf(n->env_id, sizeof(n->env_id), "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
		 hex + 16, hex + 20);
	snprintf(n->db, sizeof(n->db), "%s%s", a->prefix, hex);
	snprintf(n->rw, sizeof(n->rw), "%s_rw", n->db);
	snprintf(n->ro, sizeof(n->ro), "%s_ro", n->db);
	snprintf(n->marker, sizeof(n->marker), "envdb:%s", n->env_id);
}

/* Print an untrusted argument only when it is short and printable. */
static int invalid_arg(const pga *a, const char *op, const char *what, const char *value,
		       const char *expected)
{
	size_t i;

	for (i = 0; value[i] != '\0' && i < 80; i++)
		if (!isprint((unsigned char)value[i]))
			break;
	if (value[i] == '\0')
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: %s '%s' is not %s", op, what, value, expected);
	return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL, "%s: %s is not %s", op, what,
			      expected);
}

int pga_names_from_id(pga_names *n, const pga *a, const char *op, const char *environment_id)
{
	char hex[PGA_HEX_LEN + 1];

	if (environment_id == NULL)
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: no environment id given", op);
	if (!uuid_hex(hex, environment_id))
		return invalid_arg(a, op, "environment id", environment_id, "a uuid");
	names_fill(n, a, hex);
	return ENVDB_OK;
}

int pga_db_name_parse(const pga *a, const char *s, char *hex)
{
	size_t lp = strlen(a->prefix), i;

	if (s == NULL || strncmp(s, a->prefix, lp) != 0 || strlen(s) != lp + PGA_HEX_LEN)
		return 0;
	for (i = lp; i < lp + PGA_HEX_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	if (hex != NULL)
		memcpy(hex, s + lp, PGA_HEX_LEN + 1);
	return 1;
}

/* True when the metadata marks a database the v4 -> v5 migration
 * registered under its legacy name ({"migrated_from": ...},
 * core/MIGRATION.md).  A textual test is enough: it only chooses which
 * error to report, never whether to act. */
static int is_migrated(const envdb_db_ref *db)
{
	return ENVDB_STRUCT_HAS(db, envdb_db_ref, metadata) && db->metadata != NULL &&
	       strstr(db->metadata, "\"migrated_from\"") != NULL;
}

/* A migrated database lacks everything this adapter's credentials are
 * built on: its group roles, and the marker that proves it is ours. */
static int migrated_unsupported(const pga *a, const char *op, const char *name)
{
	size_t i;

	for (i = 0; name[i] != '\0' && i < 80; i++)
		if (!isprint((unsigned char)name[i]))
			break;
	return a->host->error(a->host->ctx, ENVDB_ERR_NOT_SUPPORTED, NULL,
			      "%s: database %s was migrated from v4 (metadata migrated_from), "
			      "not created by this adapter: it has no owner and reader group "
			      "roles (<database>_rw, <database>_ro) and no ownership marker "
			      "(envdb:<environment id>), which %s needs; the postgres adapter "
			      "does not take over legacy databases (see core/MIGRATION.md)",
			      op, name[i] == '\0' ? name : "(name not shown)", op);
}

int pga_names_from_ref(pga_names *n, const pga *a, const char *op, const envdb_db_ref *db)
{
	char hex[PGA_HEX_LEN + 1];
	const char *given;
	int rc;

	if (db == NULL)
		return a->host->error(a->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "%s: no database reference given", op);
	given = ENVDB_STRUCT_HAS(db, envdb_db_ref, database_name) ? db->database_name : NULL;
	if (ENVDB_STRUCT_HAS(db, envdb_db_ref, environment_id) && db->environment_id != NULL) {
		rc = pga_names_from_id(n, a, op, db->environment_id);
		if (rc != ENVDB_OK)
			return rc;
		if (given != NULL && strcmp(given, n->db) != 0) {
			if (is_migrated(db))
				return migrated_unsupported(a, op, given);
			return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
					      "%s: database name does not belong to environment "
					      "%s (expected %s)",
					      op, n->env_id, n->db);
		}
		return ENVDB_OK;
	}
	if (given == NULL)
		return a->host->error(a->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: neither an environment id nor a database name given",
				      op);
	if (!pga_db_name_parse(a, given, hex))
		return invalid_arg(a, op, "database name", given,
				   "a name this plugin makes (prefix + 32 hex digits)");
	names_fill(n, a, hex);
	return ENVDB_OK;
}

static int is_hex_tail(const char *s, size_t len)
{
	size_t i;

	if (strlen(s) != len)
		return 0;
	for (i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

enum pga_role_kind pga_role_kind(const pga_names *n, const char *role)
{
	size_t ld = strlen(n->db);

	if (role == NULL || strncmp(role, n->db, ld) != 0)
		return PGA_ROLE_OTHER;
	role += ld;
	if (strcmp(role, "_rw") == 0)
		return PGA_ROLE_RW_GROUP;
	if (strcmp(role, "_ro") == 0)
		return PGA_ROLE_RO_GROUP;
	if (strncmp(role, "_rw_", 4) == 0 && is_hex_tail(role + 4, PGA_CRED_HEX))
		return PGA_ROLE_RW_LOGIN;
	if (strncmp(role, "_ro_", 4) == 0 && is_hex_tail(role + 4, PGA_CRED_HEX))
		return PGA_ROLE_RO_LOGIN;
	return PGA_ROLE_OTHER;
}

int pga_login_role(char *out, const pga *a, const pga_names *n, uint32_t authorization,
		   const char *credential_id)
{
	static const char digits[] = "0123456789abcdef";
	char hex[PGA_HEX_LEN + 1];
	unsigned char rnd[PGA_CRED_HEX];
	const char *tail;
	size_t i;

	if (credential_id != NULL) {
		if (!uuid_hex(hex, credential_id))
			return invalid_arg(a, "mint", "credential id", credential_id, "a uuid");
		/* The last digits: random in UUIDv4 and in UUIDv7 alike (the
		 * first ones of a v7 are a timestamp). */
		tail = hex + PGA_HEX_LEN - PGA_CRED_HEX;
	} else {
		if (a->host->random(a->host->ctx, rnd, sizeof(rnd)) != 0)
			return a->host->error(a->host->ctx, ENVDB_ERR_GENERIC, NULL,
					      "mint %s: the host's random generator failed", n->db);
		for (i = 0; i < PGA_CRED_HEX; i++)
			hex[i] = digits[rnd[i] & 0x0f];
		hex[PGA_CRED_HEX] = '\0';
		tail = hex;
	}
	snprintf(out, PGA_ROLE_MAX + 1, "%s_%s_%.*s", n->db,
		 authorization == ENVDB_AUTH_READ_ONLY ? "ro" : "rw", PGA_CRED_HEX, tail);
	return ENVDB_OK;
}

int pga_marker_matches(const char *comment, const char *marker)
{
	size_t lm = strlen(marker);

	if (comment == NULL || strncmp(comment, marker, lm) != 0)
		return 0;
	return comment[lm] == '\0' || comment[lm] == ' ';
}

static int uuid_text(const char *s)
{
	size_t i;

	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
			return 0;
		}
	}
	return 1;
}

const char *pga_deployment(const pga *a, const char *given)
{
	const char *id = given;

	if (id == NULL && ENVDB_STRUCT_HAS(a->host, envdb_host, deployment_id) &&
	    a->host->deployment_id != NULL)
		id = a->host->deployment_id(a->host->ctx);
	return id != NULL && strlen(id) == 36 && uuid_text(id) ? id : NULL;
}

const char *pga_ref_deployment(const pga *a, const envdb_db_ref *db)
{
	return pga_deployment(a, db != NULL && ENVDB_STRUCT_HAS(db, envdb_db_ref, deployment_id)
					 ? db->deployment_id
					 : NULL);
}

int pga_marker_deployment(const char *comment, char out[37])
{
	const char *tag = comment != NULL ? strstr(comment, PGA_DEPLOYMENT_TAG) : NULL;

	out[0] = '\0';
	if (tag == NULL)
		return 0;
	tag += sizeof(PGA_DEPLOYMENT_TAG) - 1;
	if (strlen(tag) < 36 || !uuid_text(tag) || (tag[36] != '\0' && tag[36] != ' '))
		return 0;
	memcpy(out, tag, 36);
	out[36] = '\0';
	return 1;
}

void pga_fingerprint(char *out, const char *secret, size_t secret_len)
{
	/* BLAKE2b, personalised so the value is useless for anything else;
	 * only 64 bits of it are kept: enough to pick one of a database's
	 * roles, and nothing an attacker could use against a 256-bit
	 * random password. */
	static const unsigned char key[] = "envdb-postgres-credential-fp-v1";
	unsigned char h[crypto_generichash_BYTES_MIN];

	crypto_generichash(h, sizeof(h), (const unsigned char *)secret, secret_len, key,
			   sizeof(key) - 1);
	sodium_bin2hex(out, PGA_FP_HEX + 1, h, PGA_FP_HEX / 2);
	sodium_memzero(h, sizeof(h));
}

int pga_comment_has_fp(const char *comment, const char *fp)
{
	const char *p;

	if (comment == NULL)
		return 0;
	for (p = strstr(comment, " fp:"); p != NULL; p = strstr(p + 1, " fp:"))
		if (strncmp(p + 4, fp, PGA_FP_HEX) == 0 &&
		    (p[4 + PGA_FP_HEX] == '\0' || p[4 + PGA_FP_HEX] == ' '))
			return 1;
	return 0;
}

int pga_url(char *out, size_t cap, const pga *a, const char *db)
{
	/* An IPv6 literal goes in brackets; client_host was checked at init to
	 * hold only characters a URL carries verbatim. */
	int v6 = strchr(a->client_host, ':') != NULL;
	int n = snprintf(out, cap, "postgresql://%s%s%s:%s/%s", v6 ? "[" : "", a->client_host,
			 v6 ? "]" : "", a->client_port, db);

	return n < 0 || (size_t)n >= cap ? -1 : n;
}

int pga_metadata(char *out, size_t cap, const pga *a, const pga_names *n, int server_version)
{
	/* Every value is [a-z0-9_.:-]: no JSON escaping is needed. */
	int len = snprintf(out, cap,
			   "{\"driver\":\"postgres\",\"database\":\"%s\",\"owner_role\":\"%s\","
			   "\"reader_role\":\"%s\",\"login_role_pattern\":\"%s_rw_*|%s_ro_*\","
			   "\"marker\":\"%s\",\"server_version\":%d,"
			   "\"connect\":\"url + user=<credential handle> + password=<secret>\"}",
			   n->db, n->rw, n->ro, n->db, n->db, n->marker, server_version);

	(void)a;
	return len < 0 || (size_t)len >= cap ? -1 : len;
}

char *pga_strdup(const pga *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = a->host->alloc(a->host->ctx, n);

	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

void pga_wipe(void *p, size_t len)
{
	if (p != NULL && len > 0)
		sodium_memzero(p, len);
}
