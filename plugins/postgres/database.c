/*
 * plugins/postgres/database.c — the postgres adapter's database operations:
 * derive the name, create a database with its two group roles (all or
 * nothing), drop it with every role made for it, and list the databases
 * this plugin owns on the server.
 *
 * Ownership: the plugin only ever touches a database or a role whose name
 * it derives AND whose comment is its marker "envdb:<environment id>"; a
 * name collision with something else on the server is an error, never a
 * takeover.  Every identifier reaching SQL goes through PQescapeIdentifier,
 * every literal through PQescapeLiteral or a statement parameter.
 *
 * What create makes (see README.md):
 *   roles    <db>_rw  NOLOGIN  owns the public schema; its login roles
 *                              (<db>_rw_<x>) run with role = <db>_rw, so
 *                              every object belongs to the group
 *            <db>_ro  NOLOGIN  CONNECT, USAGE, SELECT on existing and
 *                              future tables and sequences
 *   database <db>              owned by the administrator, REVOKE ALL FROM
 *                              PUBLIC, CONNECT/TEMPORARY/CREATE to <db>_rw,
 *                              CONNECT to <db>_ro
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "pg_adapter.h"

/* ------------------------------------------------------------------------ */
/* Lookups                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Is the database ours?  It is when it carries our marker, or — the window
 * between CREATE DATABASE and COMMENT ON DATABASE, which a crash can leave
 * behind — when the administrator owns it and its owner group role (made
 * and marked in a committed transaction before the database) carries the
 * marker.
 */
static const char db_lookup_sql[] =
	"SELECT s.description, d.datdba = (SELECT oid FROM pg_catalog.pg_roles "
	"WHERE rolname = current_user), rs.description, d.datname "
	"FROM pg_catalog.pg_database d "
	"LEFT JOIN pg_catalog.pg_shdescription s ON s.objoid = d.oid "
	"AND s.classoid = 'pg_catalog.pg_database'::pg_catalog.regclass "
	"LEFT JOIN pg_catalog.pg_roles r ON r.rolname = d.datname || '_rw' "
	"LEFT JOIN pg_catalog.pg_shdescription rs ON rs.objoid = r.oid "
	"AND rs.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass ";

/* Row `i` of a db_lookup_sql result: ours for environment marker `marker`? */
static int db_row_is_ours(PGresult *r, int i, const char *marker)
{
	if (!PQgetisnull(r, i, 0))
		return pga_marker_matches(PQgetvalue(r, i, 0), marker);
	return strcmp(PQgetvalue(r, i, 1), "t") == 0 && !PQgetisnull(r, i, 2) &&
	       pga_marker_matches(PQgetvalue(r, i, 2), marker);
}

/* Whose a database of ours (db_row_is_ours) is, by the deployment its
 * marker names: the database's comment, or in the window before it, the
 * owner group role's. */
enum db_owner { OWNER_NONE = 0, OWNER_MINE, OWNER_OTHER };

static enum db_owner db_row_owner(PGresult *r, int i, const char *dep, char other[37])
{
	const char *comment = !PQgetisnull(r, i, 0) ? PQgetvalue(r, i, 0)
			      : !PQgetisnull(r, i, 2) ? PQgetvalue(r, i, 2)
						      : NULL;

	if (!pga_marker_deployment(comment, other))
		return OWNER_NONE; /* made by an earlier envdb (or a host without an id) */
	return dep != NULL && strcmp(other, dep) == 0 ? OWNER_MINE : OWNER_OTHER;
}

/* The db_lookup_sql row of the database of `n` into *r (none when absent). */
static int db_lookup_row(PGresult **r, const pga_op *o, PGconn *conn, const pga_names *n)
{
	const char *params[1] = {n->db};
	char sql[sizeof(db_lookup_sql) + 32];

	snprintf(sql, sizeof(sql), "%sWHERE d.datname = $1", db_lookup_sql);
	return pga_exec(r, o, conn, "look up the database", sql, 1, params);
}

int pga_db_lookup(int *exists, int *ours, const pga_op *o, PGconn *conn, const pga_names *n)
{
	PGresult *r = NULL;
	int rc;

	*exists = *ours = 0;
	rc = db_lookup_row(&r, o, conn, n);
	if (rc != ENVDB_OK)
		return rc;
	if (PQntuples(r) > 0) {
		*exists = 1;
		*ours = db_row_is_ours(r, 0, n->marker);
	}
	PQclear(r);
	return ENVDB_OK;
}

int pga_find_roles(PGresult **res, const pga_op *o, PGconn *conn, const pga_names *n)
{
	char like[PGA_DB_MAX + 2];
	const char *params[1] = {like};

	snprintf(like, sizeof(like), "%s_", n->db);
	/* Login roles first (longest names sort after their group), so that
	 * drop removes them before the groups they are members of. */
	return pga_exec(res, o, conn, "look up the roles",
			"SELECT r.rolname, r.rolcanlogin, s.description "
			"FROM pg_catalog.pg_roles r "
			"LEFT JOIN pg_catalog.pg_shdescription s ON s.objoid = r.oid "
			"AND s.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass "
			"WHERE pg_catalog.starts_with(r.rolname, $1) "
			"ORDER BY pg_catalog.length(r.rolname) DESC, r.rolname",
			1, params);
}

int pga_role_row_is_ours(PGresult *res, int i, const pga_names *n)
{
	return pga_role_kind(n, PQgetvalue(res, i, 0)) != PGA_ROLE_OTHER &&
	       !PQgetisnull(res, i, 2) && pga_marker_matches(PQgetvalue(res, i, 2), n->marker);
}

int pga_terminate_role_sessions(const pga_op *o, PGconn *conn, const char *role, int superuser)
{
	const char *params[1] = {role};
	char q[PGA_QID_MAX], sql[256];
	int rc;

	/* pg_terminate_backend (and DROP DATABASE ... WITH (FORCE)) need the
	 * privileges of the session's role; a CREATEROLE administrator gets
	 * them by membership, which disappears with the role. */
	if (!superuser) {
		if ((rc = pga_qid(q, o, conn, role)) != ENVDB_OK ||
		    (rc = pga_sql(sql, sizeof(sql), o, "GRANT %s TO CURRENT_USER", q)) !=
			    ENVDB_OK ||
		    (rc = pga_exec(NULL, o, conn, "let the administrator end the role's sessions",
				   sql, 0, NULL)) != ENVDB_OK)
			return rc;
	}
	return pga_exec(NULL, o, conn, "terminate the role's sessions",
			"SELECT pg_catalog.pg_terminate_backend(pid) FROM "
			"pg_catalog.pg_stat_activity WHERE usename = $1 AND "
			"pid <> pg_catalog.pg_backend_pid()",
			1, params);
}

/* ------------------------------------------------------------------------ */
/* database_name                                                             */
/* ------------------------------------------------------------------------ */

int pga_database_name(void *instance, const char *environment_id, envdb_buffer *name)
{
	pga *a = instance;
	pga_names n;
	int rc;

	rc = pga_names_from_id(&n, a, "database_name", environment_id);
	if (rc != ENVDB_OK)
		return rc;
	rc = envdb_buffer_set_str(name, n.db);
	if (rc == ENVDB_ERR_BUFFER_TOO_SMALL)
		return a->host->error(a->host->ctx, rc, NULL,
				      "database_name %s: the buffer is too small", n.db);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Drop (also used to undo a failed create)                                  */
/* ------------------------------------------------------------------------ */

/* Drop the database if it exists (it was checked to be ours). */
static int drop_database(const pga_op *o, PGconn *conn, const pga_names *n)
{
	const char *params[1] = {n->db};
	char q[PGA_QID_MAX], sql[256];
	int rc;

	if ((rc = pga_qid(q, o, conn, n->db)) != ENVDB_OK)
		return rc;
	if (PQserverVersion(conn) >= 130000) {
		if ((rc = pga_sql(sql, sizeof(sql), o, "DROP DATABASE IF EXISTS %s WITH (FORCE)",
				  q)) != ENVDB_OK)
			return rc;
		return pga_exec(NULL, o, conn, "drop the database", sql, 0, NULL);
	}
	/* Before 13: refuse new connections, end the current ones, drop. */
	if ((rc = pga_sql(sql, sizeof(sql), o, "ALTER DATABASE %s ALLOW_CONNECTIONS false", q)) !=
		    ENVDB_OK ||
	    (rc = pga_exec(NULL, o, conn, "close the database", sql, 0, NULL)) != ENVDB_OK ||
	    (rc = pga_exec(NULL, o, conn, "terminate the database's sessions",
			   "SELECT pg_catalog.pg_terminate_backend(pid) FROM "
			   "pg_catalog.pg_stat_activity WHERE datname = $1 AND "
			   "pid <> pg_catalog.pg_backend_pid()",
			   1, params)) != ENVDB_OK ||
	    (rc = pga_sql(sql, sizeof(sql), o, "DROP DATABASE IF EXISTS %s", q)) != ENVDB_OK)
		return rc;
	return pga_exec(NULL, o, conn, "drop the database", sql, 0, NULL);
}

static int drop_role(const pga_op *o, PGconn *conn, const char *role)
{
	char q[PGA_QID_MAX], sql[256], what[128];
	int rc;

	if ((rc = pga_qid(q, o, conn, role)) != ENVDB_OK ||
	    (rc = pga_sql(sql, sizeof(sql), o, "DROP ROLE IF EXISTS %s", q)) != ENVDB_OK)
		return rc;
	snprintf(what, sizeof(what), "drop role %s", role);
	return pga_exec(NULL, o, conn, what, sql, 0, NULL);
}

/*
 * With a deployment id `dep` (ENVDB_ADAPTER_CAP_DEPLOYMENT): may the
 * existing database of ours in row 0 of `r` be dropped?  Not when its
 * marker names another deployment; not when it names none (made by an
 * earlier envdb, for whichever deployment shares the server) and the host
 * names the database alone (`by_name`: a reconcile orphan, which no row of
 * this deployment names).
 */
static int drop_allowed(const pga_op *o, PGresult *r, const pga_names *n, const char *dep,
			int by_name)
{
	char other[37];

	switch (db_row_owner(r, 0, dep, other)) {
	case OWNER_MINE:
		return ENVDB_OK;
	case OWNER_OTHER:
		return pga_fail(o, ENVDB_ERR_STATE, NULL,
				"the database belongs to deployment %s, not to this one (%s): "
				"not dropping it",
				other, dep);
	default:
		if (!by_name)
			return ENVDB_OK; /* this deployment has its row: ours */
		return pga_fail(o, ENVDB_ERR_STATE, NULL,
				"the database carries the marker '%s' without a deployment id "
				"(made by an earlier envdb, maybe for another deployment sharing "
				"the server) and no row of this deployment names it: not "
				"dropping it",
				n->marker);
	}
}

/*
 * Drop everything of the environment `n` that is ours: its login roles are
 * locked out first (NOLOGIN), their sessions and the database's ended, the
 * database dropped, then every role.  Nothing that lacks our marker is
 * touched; a database with our name but not our marker is an error, and so
 * is one of another deployment (drop_allowed; `dep` NULL: not checked).
 */
static int drop_all(const pga_op *o, PGconn *conn, const pga_names *n, const char *dep,
		    int by_name)
{
	pga_admin_privs privs;
	PGresult *roles = NULL, *db = NULL;
	char q[PGA_QID_MAX], sql[256];
	int exists, ours, i, rc, first = ENVDB_OK;

	if ((rc = pga_admin_privileges(&privs, o, conn)) != ENVDB_OK)
		return rc;
	if ((rc = db_lookup_row(&db, o, conn, n)) != ENVDB_OK)
		return rc;
	exists = PQntuples(db) > 0;
	ours = exists && db_row_is_ours(db, 0, n->marker);
	rc = exists && ours && dep != NULL ? drop_allowed(o, db, n, dep, by_name) : ENVDB_OK;
	PQclear(db);
	if (rc != ENVDB_OK)
		return rc;
	if (exists && !ours)
		return pga_fail(o, ENVDB_ERR_STATE, NULL,
				"the database exists but neither carries the marker '%s' nor "
				"belongs to the administrator with a marked owner role: it was "
				"not made by envdb, not dropping it",
				n->marker);
	if ((rc = pga_find_roles(&roles, o, conn, n)) != ENVDB_OK)
		return rc;

	/* Lock out every login role and end its sessions. */
	for (i = 0; i < PQntuples(roles); i++) {
		const char *role = PQgetvalue(roles, i, 0);
		enum pga_role_kind k = pga_role_kind(n, role);

		if (k == PGA_ROLE_OTHER)
			continue;
		if (!pga_role_row_is_ours(roles, i, n)) {
			o->a->host->log(o->a->host->ctx, ENVDB_LOG_WARNING,
					"%s %s: role %s does not carry the marker '%s'; "
					"left alone",
					o->op, n->db, role, n->marker);
			continue;
		}
		if (k != PGA_ROLE_RW_LOGIN && k != PGA_ROLE_RO_LOGIN)
			continue;
		if ((rc = pga_qid(q, o, conn, role)) != ENVDB_OK ||
		    (rc = pga_sql(sql, sizeof(sql), o, "ALTER ROLE %s NOLOGIN PASSWORD NULL", q)) !=
			    ENVDB_OK ||
		    (rc = pga_exec(NULL, o, conn, "lock out a login role", sql, 0, NULL)) !=
			    ENVDB_OK ||
		    (rc = pga_terminate_role_sessions(o, conn, role, privs.superuser)) != ENVDB_OK)
			goto done;
	}
	if (exists && (rc = drop_database(o, conn, n)) != ENVDB_OK)
		goto done;
	/* Then the roles, logins before groups (the result's order); keep
	 * going after a failure so a retry has less left to do. */
	for (i = 0; i < PQntuples(roles); i++) {
		if (!pga_role_row_is_ours(roles, i, n))
			continue;
		rc = drop_role(o, conn, PQgetvalue(roles, i, 0));
		if (rc != ENVDB_OK && first == ENVDB_OK)
			first = rc;
		if (rc == ENVDB_ERR_UNAVAILABLE || rc == ENVDB_ERR_TIMEOUT)
			break;
	}
	rc = first;
done:
	PQclear(roles);
	return rc;
}

int pga_drop(void *instance, const envdb_db_ref *db)
{
	pga *a = instance;
	pga_op o = {.a = a, .op = "drop"};
	pga_names n;
	PGconn *conn;
	int rc;

	rc = pga_names_from_ref(&n, a, "drop", db);
	if (rc != ENVDB_OK)
		return rc;
	o.object = n.db;
	rc = pga_admin(&conn, &o);
	if (rc != ENVDB_OK)
		return rc;
	return drop_all(&o, conn, &n, pga_ref_deployment(a, db), db->environment_id == NULL);
}

/* ------------------------------------------------------------------------ */
/* Create                                                                    */
/* ------------------------------------------------------------------------ */

/* Stop when a name we need is taken by something that is not ours; remove
 * our own leftovers of an interrupted create or drop (roles without their
 * database). */
static int clear_leftover_roles(const pga_op *o, PGconn *conn, const pga_names *n)
{
	PGresult *roles = NULL;
	int i, rc = ENVDB_OK;

	if ((rc = pga_find_roles(&roles, o, conn, n)) != ENVDB_OK)
		return rc;
	for (i = 0; i < PQntuples(roles); i++) {
		const char *role = PQgetvalue(roles, i, 0);

		if (pga_role_kind(n, role) != PGA_ROLE_OTHER &&
		    !pga_role_row_is_ours(roles, i, n)) {
			rc = pga_fail(o, ENVDB_ERR_EXISTS, "42710",
				      "role %s already exists and does not carry the marker '%s': "
				      "it was not made by envdb, not touching it",
				      role, n->marker);
			goto done;
		}
	}
	for (i = 0; i < PQntuples(roles); i++) {
		if (!pga_role_row_is_ours(roles, i, n))
			continue;
		o->a->host->log(o->a->host->ctx, ENVDB_LOG_INFO,
				"create %s: removing role %s left by an interrupted "
				"operation",
				n->db, PQgetvalue(roles, i, 0));
		if ((rc = drop_role(o, conn, PQgetvalue(roles, i, 0))) != ENVDB_OK)
			goto done;
	}
done:
	PQclear(roles);
	return rc;
}

/* CREATE ROLE <role> NOLOGIN with our marker. */
static int create_group_role(const pga_op *o, PGconn *conn, const char *role, const char *qmarker)
{
	char q[PGA_QID_MAX], sql[512];
	int rc;

	if ((rc = pga_qid(q, o, conn, role)) != ENVDB_OK ||
	    (rc = pga_sql(sql, sizeof(sql), o, "CREATE ROLE %s NOLOGIN", q)) != ENVDB_OK)
		return rc;
	rc = pga_exec(NULL, o, conn, "create role", sql, 0, NULL);
	if (rc == ENVDB_ERR_PERMISSION)
		return pga_fail(o, rc, "42501",
				"create role %s: permission denied (the administrator role needs "
				"the CREATEROLE privilege)",
				role);
	if (rc != ENVDB_OK)
		return rc;
	if ((rc = pga_sql(sql, sizeof(sql), o, "COMMENT ON ROLE %s IS %s", q, qmarker)) != ENVDB_OK)
		return rc;
	return pga_exec(NULL, o, conn, "mark role", sql, 0, NULL);
}

static int create_database(const pga_op *o, PGconn *conn, const pga_names *n)
{
	char qdb[PGA_QID_MAX], qtpl[2 * 63 + 3], sql[512], limit[32] = "";
	int rc;

	if ((rc = pga_qid(qdb, o, conn, n->db)) != ENVDB_OK)
		return rc;
	if (o->a->template_db != NULL) {
		char *q = PQescapeIdentifier(conn, o->a->template_db, strlen(o->a->template_db));
		if (q == NULL)
			return pga_fail(o, ENVDB_ERR_CONFIG, NULL,
					"cannot quote the template name");
		snprintf(qtpl, sizeof(qtpl), "%s", q);
		PQfreemem(q);
	}
	if (o->a->connection_limit >= 0)
		snprintf(limit, sizeof(limit), " CONNECTION LIMIT %d", o->a->connection_limit);
	if ((rc = pga_sql(sql, sizeof(sql), o, "CREATE DATABASE %s%s%s%s", qdb,
			  o->a->template_db != NULL ? " TEMPLATE " : "",
			  o->a->template_db != NULL ? qtpl : "", limit)) != ENVDB_OK)
		return rc;
	rc = pga_exec(NULL, o, conn, "create database", sql, 0, NULL);
	if (rc == ENVDB_ERR_PERMISSION)
		return pga_fail(o, rc, "42501",
				"create database: permission denied (the administrator role needs "
				"the CREATEDB privilege%s)",
				o->a->template_db != NULL
					? ", and the template must be a template database or owned "
					  "by it"
					: "");
	if (rc == ENVDB_ERR_NOT_FOUND && o->a->template_db != NULL)
		return pga_fail(o, ENVDB_ERR_CONFIG, "3D000",
				"create database: the template database (configuration template) "
				"does not exist");
	return rc;
}

/* The grants on the database itself (run on the admin connection). */
static int grant_database(const pga_op *o, PGconn *conn, const pga_names *n, const char *qmarker)
{
	char qdb[PGA_QID_MAX], qrw[PGA_QID_MAX], qro[PGA_QID_MAX], sql[512];
	int rc;

	if ((rc = pga_qid(qdb, o, conn, n->db)) != ENVDB_OK ||
	    (rc = pga_qid(qrw, o, conn, n->rw)) != ENVDB_OK ||
	    (rc = pga_qid(qro, o, conn, n->ro)) != ENVDB_OK)
		return rc;
	if ((rc = pga_begin(o, conn)) != ENVDB_OK)
		return rc;
	if ((rc = pga_sql(sql, sizeof(sql), o, "COMMENT ON DATABASE %s IS %s", qdb, qmarker)) !=
		    ENVDB_OK ||
	    (rc = pga_exec(NULL, o, conn, "mark the database", sql, 0, NULL)) != ENVDB_OK ||
	    (rc = pga_sql(sql, sizeof(sql), o, "REVOKE ALL ON DATABASE %s FROM PUBLIC", qdb)) !=
		    ENVDB_OK ||
	    (rc = pga_exec(NULL, o, conn, "revoke public access", sql, 0, NULL)) != ENVDB_OK ||
	    (rc = pga_sql(sql, sizeof(sql), o,
			  "GRANT CONNECT, TEMPORARY, CREATE ON DATABASE %s TO %s", qdb, qrw)) !=
		    ENVDB_OK ||
	    (rc = pga_exec(NULL, o, conn, "grant full access", sql, 0, NULL)) != ENVDB_OK ||
	    (rc = pga_sql(sql, sizeof(sql), o, "GRANT CONNECT ON DATABASE %s TO %s", qdb, qro)) !=
		    ENVDB_OK ||
	    (rc = pga_exec(NULL, o, conn, "grant read access", sql, 0, NULL)) != ENVDB_OK ||
	    (rc = pga_commit(o, conn)) != ENVDB_OK) {
		pga_rollback(o, conn);
		return rc;
	}
	return ENVDB_OK;
}

/*
 * Tables and sequences a template brought along: readable by <db>_ro when
 * the administrator may grant that (it owns them).  Objects of other
 * owners make GRANT ... ON ALL fail; that is not worth failing create for,
 * so it runs under a savepoint and is reported as a warning.
 */
static int grant_template_tables(const pga_op *o, PGconn *dbconn, const char *qro)
{
	char sql[256];
	int rc;

	if ((rc = pga_exec(NULL, o, dbconn, "savepoint", "SAVEPOINT template_objects", 0, NULL)) !=
	    ENVDB_OK)
		return rc;
	/* A refusal is reported like any failure; the report is moot when
	 * create then succeeds. */
	rc = pga_sql(sql, sizeof(sql), o, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s", qro);
	if (rc == ENVDB_OK)
		rc = pga_exec(NULL, o, dbconn, "grant read access to the template's tables", sql, 0,
			      NULL);
	if (rc == ENVDB_OK &&
	    (rc = pga_sql(sql, sizeof(sql), o,
			  "GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO %s", qro)) == ENVDB_OK)
		rc = pga_exec(NULL, o, dbconn, "grant read access to the template's sequences", sql,
			      0, NULL);
	if (rc == ENVDB_ERR_PERMISSION) {
		o->a->host->log(o->a->host->ctx, ENVDB_LOG_WARNING,
				"%s %s: the template holds tables the administrator does "
				"not own; read_only credentials cannot read them",
				o->op, o->object);
		return pga_exec(NULL, o, dbconn, "rollback to savepoint",
				"ROLLBACK TO SAVEPOINT template_objects", 0, NULL);
	}
	if (rc != ENVDB_OK)
		return rc;
	return pga_exec(NULL, o, dbconn, "release savepoint", "RELEASE SAVEPOINT template_objects",
			0, NULL);
}

/* Inside the new database: the public schema belongs to <db>_rw, and
 * <db>_ro may read whatever <db>_rw makes, now and later. */
static int setup_schema(const pga_op *o, PGconn *dbconn, const pga_names *n)
{
	/* head + role (+ tail + reader role): `owner` says which role follows
	 * a head without tail; public_only statements need the public schema. */
	static const struct {
		const char *head, *tail;
		int owner;
		int public_only;
	} stmts[] = {
		{"ALTER SCHEMA public OWNER TO ", "", 1, 1},
		{"REVOKE ALL ON SCHEMA public FROM PUBLIC", NULL, 0, 1},
		{"GRANT USAGE ON SCHEMA public TO ", "", 0, 1},
		{"ALTER DEFAULT PRIVILEGES FOR ROLE ", " GRANT SELECT ON TABLES TO ", 1, 0},
		{"ALTER DEFAULT PRIVILEGES FOR ROLE ", " GRANT SELECT ON SEQUENCES TO ", 1, 0},
		{"ALTER DEFAULT PRIVILEGES FOR ROLE ", " GRANT USAGE ON SCHEMAS TO ", 1, 0},
	};
	char qrw[PGA_QID_MAX], qro[PGA_QID_MAX], sql[512];
	PGresult *r = NULL;
	size_t i;
	int rc, has_public;

	if ((rc = pga_qid(qrw, o, dbconn, n->rw)) != ENVDB_OK ||
	    (rc = pga_qid(qro, o, dbconn, n->ro)) != ENVDB_OK)
		return rc;
	if ((rc = pga_begin(o, dbconn)) != ENVDB_OK)
		return rc;
	rc = pga_exec(&r, o, dbconn, "look up the public schema",
		      "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'public'", 0, NULL);
	if (rc != ENVDB_OK)
		goto fail;
	has_public = PQntuples(r) > 0;
	PQclear(r);
	for (i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
		if (stmts[i].public_only && !has_public)
			continue;
		if (stmts[i].tail == NULL)
			rc = pga_sql(sql, sizeof(sql), o, "%s", stmts[i].head);
		else if (stmts[i].tail[0] == '\0')
			rc = pga_sql(sql, sizeof(sql), o, "%s%s", stmts[i].head,
				     stmts[i].owner ? qrw : qro);
		else
			rc = pga_sql(sql, sizeof(sql), o, "%s%s%s%s", stmts[i].head, qrw,
				     stmts[i].tail, qro);
		if (rc != ENVDB_OK ||
		    (rc = pga_exec(NULL, o, dbconn, "set up the schema's privileges", sql, 0,
				   NULL)) != ENVDB_OK)
			goto fail;
	}
	if (has_public && (rc = grant_template_tables(o, dbconn, qro)) != ENVDB_OK)
		goto fail;
	if ((rc = pga_commit(o, dbconn)) != ENVDB_OK)
		goto fail;
	return ENVDB_OK;
fail:
	pga_rollback(o, dbconn);
	return rc;
}

int pga_create(void *instance, const envdb_create_request *req, envdb_buffer *url,
	       envdb_buffer *metadata)
{
	pga *a = instance;
	pga_op o = {.a = a, .op = "create"};
	pga_admin_privs privs;
	pga_names n;
	PGconn *conn = NULL, *dbconn = NULL;
	char urlbuf[512], meta[1024], q[PGA_QID_MAX], sql[256];
	char marker[PGA_FULL_MARKER_MAX + 1], qmarker[PGA_FULL_MARKER_MAX * 2 + 8];
	const char *dep;
	int url_len, meta_len, exists, ours, rc;
	int made_roles = 0, made_db = 0;

	if (req == NULL || url == NULL || metadata == NULL)
		return a->host->error(a->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "create: missing request or output buffer");
	rc = pga_names_from_id(&n, a, "create", req->environment_id);
	if (rc != ENVDB_OK)
		return rc;
	o.object = n.db;
	if (req->database_name != NULL && strcmp(req->database_name, n.db) != 0)
		return pga_fail(&o, ENVDB_ERR_INVALID, NULL,
				"the database name given does not belong to environment %s",
				n.env_id);
	url_len = pga_url(urlbuf, sizeof(urlbuf), a, n.db);
	if (url_len < 0)
		return pga_fail(&o, ENVDB_ERR_GENERIC, NULL, "internal error: url too long");

	if ((rc = pga_admin(&conn, &o)) != ENVDB_OK)
		return rc;
	meta_len = pga_metadata(meta, sizeof(meta), a, &n, PQserverVersion(conn));
	if (meta_len < 0)
		return pga_fail(&o, ENVDB_ERR_GENERIC, NULL, "internal error: metadata too long");
	/* Both outputs must fit before anything is made. */
	if (url->data == NULL || url->cap < (size_t)url_len + 1 || metadata->data == NULL ||
	    metadata->cap < (size_t)meta_len + 1) {
		url->len = (size_t)url_len;
		metadata->len = (size_t)meta_len;
		return pga_fail(&o, ENVDB_ERR_BUFFER_TOO_SMALL, NULL,
				"the url (%d bytes) or metadata (%d bytes) buffer is too small",
				url_len, meta_len);
	}

	if ((rc = pga_admin_privileges(&privs, &o, conn)) != ENVDB_OK)
		return rc;
	if (!privs.createdb || !privs.createrole)
		return pga_fail(&o, ENVDB_ERR_PERMISSION, "42501",
				"the administrator role lacks the %s privilege%s (ALTER ROLE ... "
				"%s)",
				!privs.createdb && !privs.createrole ? "CREATEDB and CREATEROLE"
				: !privs.createdb		     ? "CREATEDB"
								     : "CREATEROLE",
				!privs.createdb && !privs.createrole ? "s" : "",
				!privs.createdb && !privs.createrole ? "CREATEDB CREATEROLE"
				: !privs.createdb		     ? "CREATEDB"
								     : "CREATEROLE");
	if ((rc = pga_db_lookup(&exists, &ours, &o, conn, &n)) != ENVDB_OK)
		return rc;
	if (exists)
		return pga_fail(&o, ENVDB_ERR_EXISTS, "42P04",
				ours ? "the database already exists"
				     : "a database of that name already exists and was not made "
				       "by envdb");
	if ((rc = clear_leftover_roles(&o, conn, &n)) != ENVDB_OK)
		return rc;
	/* The database and its group roles name the deployment too. */
	dep = pga_deployment(a, ENVDB_STRUCT_HAS(req, envdb_create_request, deployment_id)
					? req->deployment_id
					: NULL);
	snprintf(marker, sizeof(marker), "%s%s%s", n.marker, dep ? PGA_DEPLOYMENT_TAG : "",
		 dep ? dep : "");
	if ((rc = pga_qlit(qmarker, sizeof(qmarker), &o, conn, marker)) != ENVDB_OK)
		return rc;

	/* 1. The group roles, in one transaction; the administrator becomes a
	 * member of the owner role so it can hand it the schema and set its
	 * default privileges. */
	if ((rc = pga_begin(&o, conn)) != ENVDB_OK)
		return rc;
	if ((rc = create_group_role(&o, conn, n.rw, qmarker)) != ENVDB_OK ||
	    (rc = create_group_role(&o, conn, n.ro, qmarker)) != ENVDB_OK)
		goto fail_tx;
	if (!privs.superuser) {
		if ((rc = pga_qid(q, &o, conn, n.rw)) != ENVDB_OK ||
		    (rc = pga_sql(sql, sizeof(sql), &o, "GRANT %s TO CURRENT_USER", q)) !=
			    ENVDB_OK ||
		    (rc = pga_exec(NULL, &o, conn,
				   "make the administrator a member of the owner "
				   "role",
				   sql, 0, NULL)) != ENVDB_OK)
			goto fail_tx;
	}
	if ((rc = pga_commit(&o, conn)) != ENVDB_OK)
		goto fail_tx;
	made_roles = 1;

	/* 2. The database (CREATE DATABASE cannot run in a transaction). */
	if ((rc = create_database(&o, conn, &n)) != ENVDB_OK)
		goto fail;
	made_db = 1;
	/* 3. Its marker and grants. */
	if ((rc = grant_database(&o, conn, &n, qmarker)) != ENVDB_OK)
		goto fail;
	/* 4. Inside it: the schema and default privileges. */
	if ((rc = pga_connect(&dbconn, &o, n.db, NULL, NULL, "the administrator")) != ENVDB_OK)
		goto fail;
	if ((rc = setup_schema(&o, dbconn, &n)) != ENVDB_OK)
		goto fail;
	PQfinish(dbconn);
	dbconn = NULL;

	memcpy(url->data, urlbuf, (size_t)url_len + 1);
	url->len = (size_t)url_len;
	memcpy(metadata->data, meta, (size_t)meta_len + 1);
	metadata->len = (size_t)meta_len;
	return ENVDB_OK;

fail_tx:
	pga_rollback(&o, conn);
fail:
	if (dbconn != NULL)
		PQfinish(dbconn);
	if (made_roles || made_db) {
		/* Leave nothing behind: drop what this call made, with extra
		 * time if the deadline is what failed. */
		pga_op undo = {.a = a, .op = "create (undo)", .object = n.db, .silent = 1};
		PGconn *uc = NULL;

		pga_cleanup_begin(a);
		if (pga_admin(&uc, &undo) == ENVDB_OK) {
			/* The database may lack its marker yet: this call made
			 * it, so it goes without the check drop_all makes. */
			if (made_db)
				(void)drop_database(&undo, uc, &n);
			(void)drop_all(&undo, uc, &n, NULL, 0);
		}
		pga_cleanup_end(a);
	}
	return rc;
}

/* ------------------------------------------------------------------------ */
/* List                                                                      */
/* ------------------------------------------------------------------------ */

int pga_list(void *instance, envdb_adapter_list_cb cb, void *cb_ctx)
{
	pga *a = instance;
	pga_op o = {.a = a, .op = "list"};
	const char *params[1] = {a->prefix};
	const char *dep = pga_deployment(a, NULL);
	PGresult *r = NULL;
	PGconn *conn;
	pga_names n;
	char hex[PGA_HEX_LEN + 1], other[37], sql[sizeof(db_lookup_sql) + 96];
	int i, rc;

	if (cb == NULL)
		return a->host->error(a->host->ctx, ENVDB_ERR_MISUSE, NULL, "list: no callback");
	if ((rc = pga_admin(&conn, &o)) != ENVDB_OK)
		return rc;
	snprintf(sql, sizeof(sql),
		 "%sWHERE pg_catalog.starts_with(d.datname, $1) ORDER BY d.datname", db_lookup_sql);
	rc = pga_exec(&r, &o, conn, "list databases", sql, 1, params);
	if (rc != ENVDB_OK)
		return rc;
	for (i = 0; i < PQntuples(r); i++) {
		const char *name = PQgetvalue(r, i, 3);

		/* Ours: a name we derive, marked (or owned, see above) for the
		 * environment the name derives from. */
		if (!pga_db_name_parse(a, name, hex))
			continue;
		if (pga_names_from_ref(&n, a, "list",
				       &(envdb_db_ref){.struct_size = sizeof(envdb_db_ref),
						       .database_name = name}) != ENVDB_OK)
			continue;
		if (!db_row_is_ours(r, i, n.marker))
			continue;
		/* With a deployment id: this deployment's only (one without an
		 * id may be anybody's, so it is nobody's orphan). */
		if (dep != NULL && db_row_owner(r, i, dep, other) != OWNER_MINE)
			continue;
		rc = cb(cb_ctx, name);
		if (rc != 0)
			break;
	}
	PQclear(r);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* suspend, resume (ABI 1.1)                                                 */
/* ------------------------------------------------------------------------ */

/* The comment suffix that records "suspend locked this role out": resume
 * lets in exactly the roles that carry it, so a credential revoked (and
 * locked) before the suspension stays locked. */
#define PGA_SUSPENDED " suspended"

static int has_suspended_mark(const char *comment)
{
	size_t n = comment != NULL ? strlen(comment) : 0, k = strlen(PGA_SUSPENDED);

	return n >= k && strcmp(comment + n - k, PGA_SUSPENDED) == 0;
}

/* ALTER ROLE role <LOGIN|NOLOGIN> and set its comment, in one transaction. */
static int set_login(const pga_op *o, PGconn *conn, const char *role, int login,
		     const char *comment)
{
	char q[PGA_QID_MAX], qc[2 * 128 + 4], sql[512];
	int rc;

	if ((rc = pga_qid(q, o, conn, role)) != ENVDB_OK ||
	    (rc = pga_qlit(qc, sizeof(qc), o, conn, comment)) != ENVDB_OK ||
	    (rc = pga_begin(o, conn)) != ENVDB_OK)
		return rc;
	if ((rc = pga_sql(sql, sizeof(sql), o, "ALTER ROLE %s %s", q, login ? "LOGIN" : "NOLOGIN")) ==
		    ENVDB_OK &&
	    (rc = pga_exec(NULL, o, conn, login ? "let the role in again" : "lock out the role", sql,
			   0, NULL)) == ENVDB_OK &&
	    (rc = pga_sql(sql, sizeof(sql), o, "COMMENT ON ROLE %s IS %s", q, qc)) == ENVDB_OK &&
	    (rc = pga_exec(NULL, o, conn, "mark the role", sql, 0, NULL)) == ENVDB_OK)
		rc = pga_commit(o, conn);
	if (rc != ENVDB_OK)
		pga_rollback(o, conn);
	return rc;
}

static int lockout(void *instance, const envdb_db_ref *db, int suspend)
{
	pga *a = instance;
	pga_op o = {.a = a, .op = suspend ? "suspend" : "resume"};
	pga_admin_privs privs;
	pga_names n;
	PGconn *conn;
	PGresult *roles = NULL;
	int exists, ours, i, rc;

	if ((rc = pga_names_from_ref(&n, a, o.op, db)) != ENVDB_OK)
		return rc;
	o.object = n.db;
	if ((rc = pga_admin(&conn, &o)) != ENVDB_OK ||
	    (rc = pga_admin_privileges(&privs, &o, conn)) != ENVDB_OK ||
	    (rc = pga_db_lookup(&exists, &ours, &o, conn, &n)) != ENVDB_OK)
		return rc;
	if (exists && !ours)
		return pga_fail(&o, ENVDB_ERR_STATE, NULL,
				"the database does not carry the marker '%s': it was not made by "
				"envdb, not touching it",
				n.marker);
	if ((rc = pga_find_roles(&roles, &o, conn, &n)) != ENVDB_OK)
		return rc;
	for (i = 0; i < PQntuples(roles); i++) {
		const char *role = PQgetvalue(roles, i, 0), *comment = PQgetvalue(roles, i, 2);
		enum pga_role_kind k = pga_role_kind(&n, role);
		int can_login = strcmp(PQgetvalue(roles, i, 1), "t") == 0;
		size_t len = strlen(comment);
		char c[128];

		if ((k != PGA_ROLE_RW_LOGIN && k != PGA_ROLE_RO_LOGIN) ||
		    !pga_role_row_is_ours(roles, i, &n) || len + sizeof(PGA_SUSPENDED) > sizeof(c))
			continue;
		memcpy(c, comment, len + 1);
		if (suspend) {
			/* A role already locked without our mark was revoked:
			 * it stays as it is, and resume leaves it locked. */
			if (can_login) {
				if (!has_suspended_mark(c))
					memcpy(c + len, PGA_SUSPENDED, sizeof(PGA_SUSPENDED));
				if ((rc = set_login(&o, conn, role, 0, c)) != ENVDB_OK)
					goto done;
			}
			if (has_suspended_mark(comment) || can_login) {
				rc = pga_terminate_role_sessions(&o, conn, role, privs.superuser);
				if (rc != ENVDB_OK)
					goto done;
			}
		} else if (has_suspended_mark(comment)) {
			c[len - strlen(PGA_SUSPENDED)] = '\0';
			if ((rc = set_login(&o, conn, role, 1, c)) != ENVDB_OK)
				goto done;
		}
	}
	rc = ENVDB_OK;
done:
	PQclear(roles);
	return rc;
}

int pga_suspend(void *instance, const envdb_db_ref *db)
{
	return lockout(instance, db, 1);
}

int pga_resume(void *instance, const envdb_db_ref *db)
{
	return lockout(instance, db, 0);
}
