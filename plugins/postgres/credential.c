/*
 * plugins/postgres/credential.c — the postgres adapter's credentials: each
 * one is its own login role, so rotation overlaps naturally and revocation
 * hits exactly one credential.
 *
 *   mint    creates (or, when retried, resets) login role
 *           <db>_rw_<x> / <db>_ro_<x> (x: last 10 hex digits of the
 *           credential id), member of <db>_rw / <db>_ro, with a fresh
 *           random password from host->random, VALID UNTIL the expiry.
 *           Full-access roles run with role = <db>_rw in their database, so
 *           every object they make belongs to the group and survives the
 *           rotation of the login role.  The password is sent to the server
 *           only as a SCRAM verifier computed by libpq
 *           (PQencryptPasswordConn), so it never appears in a statement or
 *           a server log.  The secret is the password alone; the handle is
 *           the role name, which clients use as the user name.
 *   revoke  NOLOGIN + PASSWORD NULL, ends the role's sessions, and drops
 *           the role (keeping it locked when it still owns something).
 *   probe   finds the role whose fingerprint matches the secret (comment
 *           " fp:<16 hex>"), connects as it to the database, and runs a
 *           query.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "pg_adapter.h"

/* Is `role` (a name of the database of `n`) present, and ours? */
static int role_lookup(int *exists, int *ours, int *can_login, const pga_op *o, PGconn *conn,
		       const pga_names *n, const char *role)
{
	PGresult *r = NULL;
	int i, rc;

	*exists = *ours = *can_login = 0;
	if ((rc = pga_find_roles(&r, o, conn, n)) != ENVDB_OK)
		return rc;
	for (i = 0; i < PQntuples(r); i++) {
		if (strcmp(PQgetvalue(r, i, 0), role) != 0)
			continue;
		*exists = 1;
		*ours = pga_role_row_is_ours(r, i, n);
		*can_login = strcmp(PQgetvalue(r, i, 1), "t") == 0;
	}
	PQclear(r);
	return ENVDB_OK;
}

/* The database must exist and be ours. */
static int require_database(const pga_op *o, PGconn *conn, const pga_names *n)
{
	int exists, ours, rc;

	if ((rc = pga_db_lookup(&exists, &ours, o, conn, n)) != ENVDB_OK)
		return rc;
	if (!exists)
		return pga_fail(o, ENVDB_ERR_NOT_FOUND, "3D000", "the database does not exist");
	if (!ours)
		return pga_fail(o, ENVDB_ERR_STATE, NULL,
				"the database does not carry the marker '%s': it was not made by "
				"envdb",
				n->marker);
	return ENVDB_OK;
}

/* VALID UNTIL value: a UTC timestamp, or infinity. */
static int valid_until(char *out, size_t cap, const pga_op *o, int64_t expires_at)
{
	struct tm tm;
	time_t t;

	if (expires_at <= 0) {
		snprintf(out, cap, "infinity");
		return ENVDB_OK;
	}
	t = (time_t)expires_at;
	if ((int64_t)t != expires_at || gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999 ||
	    strftime(out, cap, "%Y-%m-%d %H:%M:%S+00", &tm) == 0)
		return pga_fail(o, ENVDB_ERR_INVALID, NULL, "expiry %lld is out of range",
				(long long)expires_at);
	return ENVDB_OK;
}

/* ------------------------------------------------------------------------ */
/* mint                                                                      */
/* ------------------------------------------------------------------------ */

/* ABI 1.1: the previous credential's overlap window ends at `until`: make
 * the server refuse it from then on (VALID UNTIL), unless it expires
 * earlier anyway.  Part of mint's transaction. */
static int end_previous_at(const pga_op *o, PGconn *conn, const char *prev, int64_t until)
{
	char u[40], qu[48], q[PGA_QID_MAX], sql[256], num[24];
	const char *params[2] = {prev, num};
	PGresult *r = NULL;
	int rc, later;

	snprintf(num, sizeof(num), "%lld", (long long)until);
	if ((rc = pga_exec(&r, o, conn, "look up the previous role's expiry",
			   "SELECT rolvaliduntil IS NULL OR rolvaliduntil > "
			   "pg_catalog.to_timestamp($2::bigint) FROM pg_catalog.pg_roles "
			   "WHERE rolname = $1",
			   2, params)) != ENVDB_OK)
		return rc;
	later = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	if (!later)
		return ENVDB_OK; /* gone, or it expires first */
	if ((rc = valid_until(u, sizeof(u), o, until)) != ENVDB_OK ||
	    (rc = pga_qlit(qu, sizeof(qu), o, conn, u)) != ENVDB_OK ||
	    (rc = pga_qid(q, o, conn, prev)) != ENVDB_OK ||
	    (rc = pga_sql(sql, sizeof(sql), o, "ALTER ROLE %s VALID UNTIL %s", q, qu)) != ENVDB_OK)
		return rc;
	return pga_exec(NULL, o, conn, "end the previous credential's overlap", sql, 0, NULL);
}

int pga_mint(void *instance, const envdb_db_ref *db, const envdb_mint_request *req,
	     envdb_buffer *secret, envdb_buffer *handle)
{
	pga *a = instance;
	pga_op o = {.a = a, .op = "mint"};
	pga_names n;
	PGconn *conn;
	unsigned char raw[PGA_PASSWORD_BYTES];
	char role[PGA_ROLE_MAX + 1], qrole[PGA_QID_MAX], qdb[PGA_QID_MAX], qgroup[PGA_QID_MAX];
	char until[40], quntil[48], comment[PGA_MARKER_MAX + 8 + PGA_FP_HEX];
	char qcomment[2 * sizeof(comment) + 4], qgrouplit[2 * PGA_ROLE_MAX + 4];
	char fp[PGA_FP_HEX + 1], qverifier[512], sql[1024];
	char *verifier = NULL;
	const char *group, *prev;
	enum pga_role_kind want;
	int exists, ours, can_login, rc, written = 0;

	if (req == NULL || secret == NULL || handle == NULL)
		return a->host->error(a->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "mint: missing request or output buffer");
	if ((rc = pga_names_from_ref(&n, a, "mint", db)) != ENVDB_OK)
		return rc;
	o.object = n.db;
	if (req->authorization != ENVDB_AUTH_FULL_ACCESS &&
	    req->authorization != ENVDB_AUTH_READ_ONLY)
		return pga_fail(&o, ENVDB_ERR_INVALID, NULL, "unknown authorization %u",
				(unsigned)req->authorization);
	want = req->authorization == ENVDB_AUTH_READ_ONLY ? PGA_ROLE_RO_LOGIN : PGA_ROLE_RW_LOGIN;
	group = want == PGA_ROLE_RO_LOGIN ? n.ro : n.rw;
	if ((rc = pga_login_role(role, a, &n, req->authorization, req->credential_id)) != ENVDB_OK)
		return rc;
	prev = req->previous_handle;
	if (prev != NULL && prev[0] != '\0') {
		/* The previous credential is another role: minting never
		 * touches it, which is what keeps it working until revoked. */
		if (pga_role_kind(&n, prev) != want)
			return pga_fail(&o, ENVDB_ERR_INVALID, NULL,
					"the previous handle is not a %s credential of this "
					"database",
					want == PGA_ROLE_RO_LOGIN ? "read_only" : "full_access");
		if (strcmp(prev, role) == 0)
			return pga_fail(
				&o, ENVDB_ERR_INVALID, NULL,
				"the new credential would reuse role %s of the previous one "
				"(same credential id)",
				role);
	}
	/* Both outputs must fit before anything changes. */
	if (handle->data == NULL || handle->cap < strlen(role) + 1 || secret->data == NULL ||
	    secret->cap < PGA_PASSWORD_LEN + 1) {
		handle->len = strlen(role);
		secret->len = PGA_PASSWORD_LEN;
		return pga_fail(&o, ENVDB_ERR_BUFFER_TOO_SMALL, NULL,
				"the handle or secret buffer is too small");
	}

	if ((rc = pga_admin(&conn, &o)) != ENVDB_OK)
		return rc;
	if ((rc = require_database(&o, conn, &n)) != ENVDB_OK)
		return rc;
	if ((rc = role_lookup(&exists, &ours, &can_login, &o, conn, &n, role)) != ENVDB_OK)
		return rc;
	if (exists && !ours)
		return pga_fail(&o, ENVDB_ERR_EXISTS, "42710",
				"role %s exists and does not carry the marker '%s': it was not "
				"made by envdb",
				role, n.marker);

	/* The password: straight into the host's secure buffer. */
	if (a->host->random(a->host->ctx, raw, sizeof(raw)) != 0) {
		rc = pga_fail(&o, ENVDB_ERR_GENERIC, NULL, "the host's random generator failed");
		goto done;
	}
	written = 1;
	sodium_bin2base64(secret->data, secret->cap, raw, sizeof(raw),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	pga_wipe(raw, sizeof(raw));
	o.secret = secret->data;
	pga_fingerprint(fp, secret->data, PGA_PASSWORD_LEN);

	verifier = PQencryptPasswordConn(conn, secret->data, role, "scram-sha-256");
	if (verifier == NULL) {
		rc = pga_fail(&o, ENVDB_ERR_GENERIC, NULL, "cannot compute the scram verifier: %s",
			      PQerrorMessage(conn));
		goto done;
	}
	snprintf(comment, sizeof(comment), "%s fp:%s", n.marker, fp);
	if ((rc = valid_until(until, sizeof(until), &o, req->expires_at)) != ENVDB_OK ||
	    (rc = pga_qlit(qverifier, sizeof(qverifier), &o, conn, verifier)) != ENVDB_OK ||
	    (rc = pga_qlit(quntil, sizeof(quntil), &o, conn, until)) != ENVDB_OK ||
	    (rc = pga_qlit(qcomment, sizeof(qcomment), &o, conn, comment)) != ENVDB_OK ||
	    (rc = pga_qlit(qgrouplit, sizeof(qgrouplit), &o, conn, group)) != ENVDB_OK ||
	    (rc = pga_qid(qrole, &o, conn, role)) != ENVDB_OK ||
	    (rc = pga_qid(qgroup, &o, conn, group)) != ENVDB_OK ||
	    (rc = pga_qid(qdb, &o, conn, n.db)) != ENVDB_OK)
		goto done;

	if ((rc = pga_begin(&o, conn)) != ENVDB_OK)
		goto done;
	if (exists) {
		/* A retried mint of the same credential: reset the role. */
		rc = pga_sql(sql, sizeof(sql), &o,
			     "ALTER ROLE %s WITH LOGIN PASSWORD %s VALID UNTIL %s", qrole,
			     qverifier, quntil);
		if (rc == ENVDB_OK)
			rc = pga_exec(NULL, &o, conn, "set the role's password", sql, 0, NULL);
		if (rc == ENVDB_OK)
			rc = pga_sql(sql, sizeof(sql), &o, "GRANT %s TO %s", qgroup, qrole);
		if (rc == ENVDB_OK)
			rc = pga_exec(NULL, &o, conn, "grant the group to the role", sql, 0, NULL);
	} else {
		rc = pga_sql(
			sql, sizeof(sql), &o,
			"CREATE ROLE %s WITH LOGIN INHERIT PASSWORD %s VALID UNTIL %s IN ROLE %s",
			qrole, qverifier, quntil, qgroup);
		if (rc == ENVDB_OK)
			rc = pga_exec(NULL, &o, conn, "create the login role", sql, 0, NULL);
		if (rc == ENVDB_ERR_PERMISSION)
			rc = pga_fail(&o, rc, "42501",
				      "create the login role %s: permission denied (the "
				      "administrator role needs the CREATEROLE privilege)",
				      role);
	}
	pga_wipe(sql, sizeof(sql));
	if (rc == ENVDB_OK && (rc = pga_sql(sql, sizeof(sql), &o, "COMMENT ON ROLE %s IS %s", qrole,
					    qcomment)) == ENVDB_OK)
		rc = pga_exec(NULL, &o, conn, "mark the login role", sql, 0, NULL);
	if (rc == ENVDB_OK && want == PGA_ROLE_RW_LOGIN &&
	    (rc = pga_sql(sql, sizeof(sql), &o, "ALTER ROLE %s IN DATABASE %s SET role = %s", qrole,
			  qdb, qgrouplit)) == ENVDB_OK)
		rc = pga_exec(NULL, &o, conn, "make the role act as the owner role", sql, 0, NULL);
	if (rc == ENVDB_OK && prev != NULL && prev[0] != '\0' &&
	    ENVDB_STRUCT_HAS(req, envdb_mint_request, previous_valid_until) &&
	    req->previous_valid_until > 0)
		rc = end_previous_at(&o, conn, prev, req->previous_valid_until);
	if (rc == ENVDB_OK)
		rc = pga_commit(&o, conn);
	if (rc != ENVDB_OK) {
		pga_rollback(&o, conn);
		goto done;
	}
	memcpy(handle->data, role, strlen(role) + 1);
	handle->len = strlen(role);
	secret->len = PGA_PASSWORD_LEN;
	written = 0;
done:
	pga_wipe(raw, sizeof(raw));
	pga_wipe(qverifier, sizeof(qverifier));
	pga_wipe(sql, sizeof(sql));
	if (verifier != NULL) {
		pga_wipe(verifier, strlen(verifier));
		PQfreemem(verifier);
	}
	if (written)
		pga_wipe(secret->data, secret->cap);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* revoke                                                                    */
/* ------------------------------------------------------------------------ */

/* DROP ROLE failed because the role still owns or holds something in the
 * database: hand what it owns to its group, drop its privileges, retry. */
static int drop_dependencies(const pga_op *o, const pga_names *n, const char *role,
			     enum pga_role_kind kind)
{
	PGconn *dbconn = NULL;
	char qrole[PGA_QID_MAX], qgroup[PGA_QID_MAX], sql[512];
	int rc;

	if ((rc = pga_connect(&dbconn, o, n->db, NULL, NULL, "the administrator")) != ENVDB_OK)
		return rc;
	if ((rc = pga_qid(qrole, o, dbconn, role)) != ENVDB_OK ||
	    (rc = pga_qid(qgroup, o, dbconn, kind == PGA_ROLE_RW_LOGIN ? n->rw : n->ro)) !=
		    ENVDB_OK)
		goto done;
	if (kind == PGA_ROLE_RW_LOGIN &&
	    ((rc = pga_sql(sql, sizeof(sql), o, "REASSIGN OWNED BY %s TO %s", qrole, qgroup)) !=
		     ENVDB_OK ||
	     (rc = pga_exec(NULL, o, dbconn, "hand the role's objects to the owner role", sql, 0,
			    NULL)) != ENVDB_OK))
		goto done;
	if ((rc = pga_sql(sql, sizeof(sql), o, "DROP OWNED BY %s", qrole)) != ENVDB_OK)
		goto done;
	rc = pga_exec(NULL, o, dbconn, "drop the role's privileges", sql, 0, NULL);
done:
	PQfinish(dbconn);
	return rc;
}

/* After a failed step of revoke: has another process removed the role
 * meanwhile (a concurrent revoke or drop)?  Then the credential is revoked,
 * which is what the caller asked for.  1 when it is gone, else 0. */
static int role_vanished(const pga_op *o, PGconn *conn, const pga_names *n, const char *role)
{
	pga_op quiet = *o;
	int exists, ours, can_login;

	quiet.silent = 1;
	if (role_lookup(&exists, &ours, &can_login, &quiet, conn, n, role) != ENVDB_OK)
		return 0;
	if (!exists)
		o->a->host->log(o->a->host->ctx, ENVDB_LOG_INFO,
				"revoke %s: role %s was removed by someone else meanwhile: revoked",
				n->db, role);
	return !exists;
}

int pga_revoke(void *instance, const envdb_db_ref *db, uint32_t authorization, const char *handle)
{
	pga *a = instance;
	pga_op o = {.a = a, .op = "revoke"};
	pga_admin_privs privs;
	pga_names n;
	PGconn *conn;
	enum pga_role_kind kind;
	char q[PGA_QID_MAX], sql[256];
	const char *state;
	int exists, ours, can_login, rc;

	if ((rc = pga_names_from_ref(&n, a, "revoke", db)) != ENVDB_OK)
		return rc;
	o.object = n.db;
	kind = pga_role_kind(&n, handle);
	if ((authorization != ENVDB_AUTH_FULL_ACCESS && authorization != ENVDB_AUTH_READ_ONLY) ||
	    kind != (authorization == ENVDB_AUTH_READ_ONLY ? PGA_ROLE_RO_LOGIN : PGA_ROLE_RW_LOGIN))
		return pga_fail(&o, ENVDB_ERR_INVALID, NULL,
				"the handle is not a %s credential of this database",
				authorization == ENVDB_AUTH_READ_ONLY ? "read_only"
								      : "full_access");
	if ((rc = pga_admin(&conn, &o)) != ENVDB_OK)
		return rc;
	if ((rc = role_lookup(&exists, &ours, &can_login, &o, conn, &n, handle)) != ENVDB_OK)
		return rc;
	if (!exists)
		return ENVDB_OK; /* already gone */
	if (!ours)
		return pga_fail(&o, ENVDB_ERR_STATE, NULL,
				"role %s does not carry the marker '%s': it was not made by envdb, "
				"not touching it",
				handle, n.marker);
	if ((rc = pga_admin_privileges(&privs, &o, conn)) != ENVDB_OK)
		return rc;
	/* 1. Lock out: no new session can start, whatever happens next.
	 * Another process may drop the role between the lookup and here (a
	 * concurrent revoke, or drop): ALTER then fails (42704, or "tuple
	 * concurrently deleted" after waiting on its lock), and so may the
	 * GRANT that lets us end its sessions; a role that is gone is
	 * revoked. */
	if ((rc = pga_qid(q, &o, conn, handle)) != ENVDB_OK ||
	    (rc = pga_sql(sql, sizeof(sql), &o, "ALTER ROLE %s NOLOGIN PASSWORD NULL", q)) !=
		    ENVDB_OK)
		return rc;
	if ((rc = pga_exec(NULL, &o, conn, "lock out the role", sql, 0, NULL)) != ENVDB_OK)
		return role_vanished(&o, conn, &n, handle) ? ENVDB_OK : rc;
	/* 2. End the sessions it still has. */
	if ((rc = pga_terminate_role_sessions(&o, conn, handle, privs.superuser)) != ENVDB_OK)
		return role_vanished(&o, conn, &n, handle) ? ENVDB_OK : rc;
	/* 3. Drop it; when it still owns or holds something, hand that over
	 * and retry; if even that fails it stays locked, which is revoked. */
	if ((rc = pga_sql(sql, sizeof(sql), &o, "DROP ROLE IF EXISTS %s", q)) != ENVDB_OK)
		return rc;
	rc = pga_exec_quiet(NULL, &state, &o, conn, sql, 0, NULL);
	if (rc == ENVDB_ERR_STATE && state != NULL && strcmp(state, "2BP01") == 0) {
		rc = drop_dependencies(&o, &n, handle, kind);
		if (rc == ENVDB_OK)
			rc = pga_exec_quiet(NULL, &state, &o, conn, sql, 0, NULL);
	}
	if (rc != ENVDB_OK) {
		a->host->log(a->host->ctx, ENVDB_LOG_WARNING,
			     "revoke %s: role %s is locked (NOLOGIN, no password) but "
			     "could not be dropped (sqlstate %s); drop removes it",
			     n.db, handle, state != NULL ? state : "none");
		if (rc == ENVDB_ERR_UNAVAILABLE || rc == ENVDB_ERR_TIMEOUT)
			return rc;
	}
	return ENVDB_OK;
}

/* ------------------------------------------------------------------------ */
/* probe                                                                     */
/* ------------------------------------------------------------------------ */

int pga_probe(void *instance, const envdb_db_ref *db, const char *secret, size_t secret_len)
{
	pga *a = instance;
	pga_op o = {.a = a, .op = "probe"};
	pga_names n;
	PGconn *conn, *client = NULL;
	PGresult *r = NULL;
	char *pw = NULL, fp[PGA_FP_HEX + 1], role[PGA_ROLE_MAX + 1] = "";
	int i, rc;

	if ((rc = pga_names_from_ref(&n, a, "probe", db)) != ENVDB_OK)
		return rc;
	o.object = n.db;
	if (secret == NULL || secret_len == 0 || memchr(secret, '\0', secret_len) != NULL)
		return pga_fail(&o, ENVDB_ERR_AUTH, NULL, "the secret is empty or not a password");
	/* libpq wants a C string: a NUL-terminated copy in secure memory. */
	pw = a->host->secure_alloc(a->host->ctx, secret_len + 1);
	if (pw == NULL)
		return pga_fail(&o, ENVDB_ERR_NOMEM, NULL, "out of secure memory");
	memcpy(pw, secret, secret_len);
	pw[secret_len] = '\0';
	o.secret = pw;
	pga_fingerprint(fp, pw, secret_len);

	if ((rc = pga_admin(&conn, &o)) != ENVDB_OK ||
	    (rc = require_database(&o, conn, &n)) != ENVDB_OK ||
	    (rc = pga_find_roles(&r, &o, conn, &n)) != ENVDB_OK)
		goto done;
	for (i = 0; i < PQntuples(r); i++) {
		enum pga_role_kind k = pga_role_kind(&n, PQgetvalue(r, i, 0));
		if ((k == PGA_ROLE_RW_LOGIN || k == PGA_ROLE_RO_LOGIN) &&
		    pga_role_row_is_ours(r, i, &n) && pga_comment_has_fp(PQgetvalue(r, i, 2), fp)) {
			snprintf(role, sizeof(role), "%s", PQgetvalue(r, i, 0));
			break;
		}
	}
	PQclear(r);
	r = NULL;
	if (role[0] == '\0') {
		rc = pga_fail(&o, ENVDB_ERR_AUTH, NULL,
			      "no credential of this database matches the secret (revoked, or "
			      "not minted for it)");
		goto done;
	}
	if ((rc = pga_connect(&client, &o, n.db, role, pw, role)) != ENVDB_OK)
		goto done;
	if ((rc = pga_exec(&r, &o, client, "query", "SELECT pg_catalog.current_database()", 0,
			   NULL)) != ENVDB_OK)
		goto done;
	if (PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 0), n.db) != 0)
		rc = pga_fail(&o, ENVDB_ERR_INTEGRITY, NULL,
			      "connected as %s but not to the expected database", role);
done:
	PQclear(r);
	PQfinish(client);
	a->host->secure_free(a->host->ctx, pw);
	return rc;
}
