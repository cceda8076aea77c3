/*
 * plugins/postgres/conn.c — how the postgres adapter talks to the server:
 * connections and statements under the host's deadline, SQLSTATE mapping,
 * and error messages that never carry a secret.
 *
 * The deadline (host->deadline_ms()) is honoured three ways: connect_timeout
 * and statement_timeout are derived from the time left, and the plugin
 * itself never blocks past it — connections are made with
 * PQconnectStartParams/PQconnectPoll and statements sent asynchronously,
 * each wait being a poll() bounded by the deadline; a statement still
 * running when it passes is cancelled and its connection closed.
 *
 * Messages: libpq's own messages can echo parts of a connection string
 * (host, user, a badly formed URI), so every message that leaves the plugin
 * is reduced to one printable line and scrubbed of the admin connection
 * string, the admin password and the secret of the operation in progress.
 * Server errors are reported by their primary message and detail (never the
 * statement text), with the SQLSTATE as native code.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pg_adapter.h"

#define PGA_MSG_MAX 1024

/* ------------------------------------------------------------------------ */
/* Messages                                                                  */
/* ------------------------------------------------------------------------ */

/* Replace every occurrence of `secret` in `msg` with "***" (a secret of
 * one or two bytes is masked in place, so the message never grows). */
static void scrub_one(char *msg, const char *secret)
{
	size_t ls, lm;
	char *p, *from = msg;

	if (secret == NULL || (ls = strlen(secret)) == 0)
		return;
	while ((p = strstr(from, secret)) != NULL) {
		if (ls >= 3) {
			lm = strlen(msg);
			memcpy(p, "***", 3);
			memmove(p + 3, p + ls, lm - (size_t)(p - msg) - ls + 1);
			from = p + 3;
		} else {
			memset(p, '*', ls);
			from = p + ls;
		}
	}
}

/* One line of printable ASCII, trimmed, without any known secret. */
static void scrub(char *msg, const pga *a, const char *op_secret)
{
	size_t i, o = 0;
	int space = 0;

	for (i = 0; msg[i] != '\0'; i++) {
		unsigned char c = (unsigned char)msg[i];

		if (c < 0x20 || c == 0x7f) {
			space = o > 0;
			continue;
		}
		if (space) {
			msg[o++] = ' ';
			space = 0;
		}
		msg[o++] = (char)c;
	}
	while (o > 0 && msg[o - 1] == ' ')
		o--;
	msg[o] = '\0';
	if (a != NULL) {
		scrub_one(msg, a->admin_conninfo);
		scrub_one(msg, a->admin_password);
	}
	scrub_one(msg, op_secret);
}

int pga_fail(const pga_op *o, int status, const char *native, const char *fmt, ...)
{
	const envdb_host *host = o->a->host;
	char msg[PGA_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	scrub(msg, o->a, o->secret);
	if (o->silent) {
		host->log(host->ctx, ENVDB_LOG_WARNING, "%s %s: %s", o->op,
			  o->object != NULL ? o->object : "-", msg);
		return status;
	}
	if (o->object != NULL)
		return host->error(host->ctx, status, native, "%s %s: %s", o->op, o->object, msg);
	return host->error(host->ctx, status, native, "%s: %s", o->op, msg);
}

static void notice_cb(void *arg, const char *message)
{
	pga *a = arg;
	char msg[PGA_MSG_MAX];

	snprintf(msg, sizeof(msg), "%s", message);
	scrub(msg, a, NULL);
	a->host->log(a->host->ctx, ENVDB_LOG_DEBUG, "server says: %s", msg);
}

/* ------------------------------------------------------------------------ */
/* Status mapping                                                            */
/* ------------------------------------------------------------------------ */

int pga_status_of_sqlstate(const char *s)
{
	static const struct {
		const char *code; /* a full SQLSTATE, or a two-character class */
		int status;
	} map[] = {
		{"57014", ENVDB_ERR_TIMEOUT},	  /* query_canceled (statement_timeout) */
		{"57P01", ENVDB_ERR_UNAVAILABLE}, /* admin_shutdown */
		{"57P02", ENVDB_ERR_UNAVAILABLE}, /* crash_shutdown */
		{"57P03", ENVDB_ERR_UNAVAILABLE}, /* cannot_connect_now */
		{"40001", ENVDB_ERR_UNAVAILABLE}, /* serialization_failure */
		{"40P01", ENVDB_ERR_UNAVAILABLE}, /* deadlock_detected */
		{"55P03", ENVDB_ERR_UNAVAILABLE}, /* lock_not_available */
		{"42501", ENVDB_ERR_PERMISSION},  /* insufficient_privilege */
		{"42P04", ENVDB_ERR_EXISTS},	  /* duplicate_database */
		{"42710", ENVDB_ERR_EXISTS},	  /* duplicate_object */
		{"3D000", ENVDB_ERR_NOT_FOUND},	  /* invalid_catalog_name */
		{"42704", ENVDB_ERR_NOT_FOUND},	  /* undefined_object */
		{"2BP01", ENVDB_ERR_STATE},	  /* dependent_objects_still_exist */
		{"55006", ENVDB_ERR_STATE},	  /* object_in_use */
		{"08", ENVDB_ERR_UNAVAILABLE},	  /* connection_exception */
		{"53", ENVDB_ERR_UNAVAILABLE},	  /* insufficient_resources */
		{"28", ENVDB_ERR_AUTH},		  /* invalid_authorization_specification */
		{"25", ENVDB_ERR_STATE},	  /* invalid_transaction_state */
		{"22", ENVDB_ERR_INVALID},	  /* data_exception */
	};
	size_t i;

	if (s == NULL || strlen(s) != 5)
		return ENVDB_ERR_GENERIC;
	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strncmp(s, map[i].code, strlen(map[i].code)) == 0)
			return map[i].status;
	return ENVDB_ERR_GENERIC;
}

/*
 * libpq reports a failed connection by message only (no SQLSTATE reaches
 * the client before the connection exists).  The server's messages are
 * matched in English; anything else is taken as the server being
 * unreachable, which is what a caller should retry.
 */
static int status_of_connect_message(const char *msg)
{
	static const char *const auth[] = {
		"password authentication failed", "authentication failed",
		"no pg_hba.conf entry",		  "is not permitted to log in",
		"no password supplied",		  "password is missing",
		"password retrieved from file",	  NULL};
	size_t i;

	for (i = 0; auth[i] != NULL; i++)
		if (strstr(msg, auth[i]) != NULL)
			return ENVDB_ERR_AUTH;
	if (strstr(msg, "role \"") != NULL && strstr(msg, "does not exist") != NULL)
		return ENVDB_ERR_AUTH;
	if (strstr(msg, "permission denied for database") != NULL)
		return ENVDB_ERR_PERMISSION;
	if (strstr(msg, "database \"") != NULL && strstr(msg, "does not exist") != NULL)
		return ENVDB_ERR_NOT_FOUND;
	if (strstr(msg, "timeout expired") != NULL)
		return ENVDB_ERR_TIMEOUT;
	return ENVDB_ERR_UNAVAILABLE;
}

/* ------------------------------------------------------------------------ */
/* Deadline                                                                  */
/* ------------------------------------------------------------------------ */

static int64_t current_deadline(const pga *a)
{
	if (a->cleanup_deadline != 0)
		return a->cleanup_deadline;
	return a->host->deadline_ms(a->host->ctx);
}

int pga_time_left(int64_t *ms, const pga_op *o)
{
	int64_t dl = current_deadline(o->a), now;

	*ms = -1;
	if (dl <= 0)
		return ENVDB_OK;
	now = o->a->host->now_ms(o->a->host->ctx);
	if (now >= dl)
		return pga_fail(o, ENVDB_ERR_TIMEOUT, NULL, "the operation's deadline passed");
	*ms = dl - now;
	return ENVDB_OK;
}

void pga_cleanup_begin(pga *a)
{
	int64_t dl = a->host->deadline_ms(a->host->ctx), now;

	if (dl <= 0)
		return;
	now = a->host->now_ms(a->host->ctx);
	a->cleanup_deadline = (dl > now ? dl : now) + PGA_CLEANUP_GRACE_MS;
}

void pga_cleanup_end(pga *a)
{
	a->cleanup_deadline = 0;
}

/* Wait until the connection's socket is ready for `events`; *revents
 * receives what happened. */
static int wait_socket(short *revents, const pga_op *o, PGconn *conn, short events,
		       const char *what)
{
	struct pollfd p;
	int64_t ms;
	int rc, r;

	for (;;) {
		rc = pga_time_left(&ms, o);
		if (rc != ENVDB_OK)
			return rc;
		p.fd = PQsocket(conn);
		p.events = events;
		p.revents = 0;
		if (p.fd < 0)
			return pga_fail(o, ENVDB_ERR_UNAVAILABLE, NULL,
					"%s: the connection is lost", what);
		r = poll(&p, 1, ms < 0 ? -1 : (ms > INT_MAX ? INT_MAX : (int)ms));
		if (r > 0) {
			*revents = p.revents;
			return ENVDB_OK;
		}
		if (r == 0)
			return pga_fail(o, ENVDB_ERR_TIMEOUT, NULL,
					"%s: the operation's deadline passed", what);
		if (errno != EINTR)
			return pga_fail(o, ENVDB_ERR_UNAVAILABLE, NULL, "%s: poll: %s", what,
					strerror(errno));
	}
}

/* ------------------------------------------------------------------------ */
/* Statements                                                                */
/* ------------------------------------------------------------------------ */

/* Ask the server to cancel what runs on `conn` (best effort). */
static void cancel_running(PGconn *conn)
{
	char err[256];
	PGcancel *c = PQgetCancel(conn);

	if (c != NULL) {
		(void)PQcancel(c, err, sizeof(err));
		PQfreeCancel(c);
	}
}

/* The connection is in an unknown state: never reuse it.  The cached
 * admin connection is marked (closed by the next pga_admin()); others are
 * closed by their owner. */
static void poison(const pga_op *o, PGconn *conn)
{
	if (conn == o->a->admin)
		o->a->admin_broken = 1;
}

/*
 * Send `sql` and collect its result.  Transport failures (connection lost,
 * deadline) are reported here and returned; a result, whatever its status,
 * is returned in *res with ENVDB_OK.  Of several results the first error,
 * else the last one, is kept.
 */
static int exec_raw(PGresult **res, const pga_op *o, PGconn *conn, const char *sql, int nparams,
		    const char *const *params)
{
	PGresult *keep = NULL, *r;
	short revents;
	int rc, f, sent;

	*res = NULL;
	if (PQstatus(conn) != CONNECTION_OK || (conn == o->a->admin && o->a->admin_broken)) {
		rc = pga_fail(o, ENVDB_ERR_UNAVAILABLE, NULL, "the connection is lost");
		poison(o, conn);
		return rc;
	}
	sent = nparams > 0 ? PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0)
			   : PQsendQuery(conn, sql);
	if (!sent)
		goto lost;
	for (;;) {
		f = PQflush(conn);
		if (f == 0)
			break;
		if (f < 0)
			goto lost;
		rc = wait_socket(&revents, o, conn, POLLIN | POLLOUT, "sending a statement");
		if (rc != ENVDB_OK)
			goto abandon;
		if ((revents & POLLIN) && !PQconsumeInput(conn))
			goto lost;
	}
	for (;;) {
		while (PQisBusy(conn)) {
			rc = wait_socket(&revents, o, conn, POLLIN, "waiting for the server");
			if (rc != ENVDB_OK)
				goto abandon;
			if (!PQconsumeInput(conn))
				goto lost;
		}
		r = PQgetResult(conn);
		if (r == NULL)
			break;
		if (keep == NULL || (PQresultStatus(keep) != PGRES_FATAL_ERROR &&
				     PQresultStatus(r) == PGRES_FATAL_ERROR)) {
			PQclear(keep);
			keep = r;
		} else {
			PQclear(r);
		}
	}
	if (keep == NULL)
		goto lost;
	if (PQresultStatus(keep) == PGRES_FATAL_ERROR &&
	    PQresultErrorField(keep, PG_DIAG_SQLSTATE) == NULL && PQstatus(conn) != CONNECTION_OK) {
		PQclear(keep);
		goto lost;
	}
	*res = keep;
	return ENVDB_OK;
lost:
	PQclear(keep);
	rc = pga_fail(o, ENVDB_ERR_UNAVAILABLE, NULL, "lost the connection to the server: %s",
		      PQerrorMessage(conn));
	poison(o, conn);
	return rc;
abandon:
	/* Deadline: cancel, and never reuse a connection whose state is
	 * unknown. */
	PQclear(keep);
	cancel_running(conn);
	poison(o, conn);
	return rc;
}

int pga_exec_quiet(PGresult **res, const char **sqlstate, const pga_op *o, PGconn *conn,
		   const char *sql, int nparams, const char *const *params)
{
	PGresult *r = NULL;
	int rc;

	*sqlstate = NULL;
	if (res != NULL)
		*res = NULL;
	rc = exec_raw(&r, o, conn, sql, nparams, params);
	if (rc != ENVDB_OK)
		return rc;
	switch (PQresultStatus(r)) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
		rc = ENVDB_OK;
		break;
	default:
		*sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		rc = pga_status_of_sqlstate(*sqlstate);
		if (rc == ENVDB_OK)
			rc = ENVDB_ERR_GENERIC;
		break;
	}
	if (res != NULL)
		*res = r;
	else
		PQclear(r);
	return rc;
}

int pga_exec(PGresult **res, const pga_op *o, PGconn *conn, const char *what, const char *sql,
	     int nparams, const char *const *params)
{
	PGresult *r = NULL;
	const char *state = NULL, *primary, *detail;
	int rc;

	if (res != NULL)
		*res = NULL;
	rc = pga_exec_quiet(&r, &state, o, conn, sql, nparams, params);
	if (rc == ENVDB_OK) {
		if (res != NULL)
			*res = r;
		else
			PQclear(r);
		return ENVDB_OK;
	}
	if (r != NULL) {
		primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
		rc = pga_fail(o, rc, state, "%s: %s%s%s%s", what,
			      primary != NULL ? primary : PQresultErrorMessage(r),
			      detail != NULL ? " (" : "", detail != NULL ? detail : "",
			      detail != NULL ? ")" : "");
		PQclear(r);
	}
	return rc;
}

int pga_qid(char *out, const pga_op *o, PGconn *conn, const char *name)
{
	char *q = PQescapeIdentifier(conn, name, strlen(name));
	size_t n;

	if (q == NULL)
		return pga_fail(o, ENVDB_ERR_INVALID, NULL, "cannot quote an identifier: %s",
				PQerrorMessage(conn));
	n = strlen(q);
	if (n >= PGA_QID_MAX) {
		PQfreemem(q);
		return pga_fail(o, ENVDB_ERR_INVALID, NULL, "identifier too long");
	}
	memcpy(out, q, n + 1);
	PQfreemem(q);
	return ENVDB_OK;
}

int pga_qlit(char *out, size_t cap, const pga_op *o, PGconn *conn, const char *value)
{
	char *q = PQescapeLiteral(conn, value, strlen(value));
	size_t n;

	if (q == NULL)
		return pga_fail(o, ENVDB_ERR_INVALID, NULL, "cannot quote a literal: %s",
				PQerrorMessage(conn));
	n = strlen(q);
	if (n >= cap) {
		pga_wipe(q, n);
		PQfreemem(q);
		return pga_fail(o, ENVDB_ERR_INVALID, NULL, "literal too long");
	}
	memcpy(out, q, n + 1);
	pga_wipe(q, n);
	PQfreemem(q);
	return ENVDB_OK;
}

int pga_sql(char *out, size_t cap, const pga_op *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, cap, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap)
		return pga_fail(o, ENVDB_ERR_GENERIC, NULL, "internal error: statement too long");
	return ENVDB_OK;
}

int pga_begin(const pga_op *o, PGconn *conn)
{
	return pga_exec(NULL, o, conn, "begin", "BEGIN", 0, NULL);
}

int pga_commit(const pga_op *o, PGconn *conn)
{
	PGresult *r = NULL;
	int rc = pga_exec(&r, o, conn, "commit", "COMMIT", 0, NULL);

	/* COMMIT of a failed transaction "succeeds" as ROLLBACK. */
	if (rc == ENVDB_OK && strcmp(PQcmdStatus(r), "COMMIT") != 0)
		rc = pga_fail(o, ENVDB_ERR_GENERIC, NULL,
			      "commit: the transaction was rolled back");
	PQclear(r);
	return rc;
}

void pga_rollback(const pga_op *o, PGconn *conn)
{
	const char *state;

	if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE)
		(void)pga_exec_quiet(NULL, &state, o, conn, "ROLLBACK", 0, NULL);
}

/* ------------------------------------------------------------------------ */
/* Connections                                                               */
/* ------------------------------------------------------------------------ */

/* statement_timeout from the time left (RESET when there is no deadline). */
static int apply_timeout(const pga_op *o, PGconn *conn, int quiet)
{
	char sql[64];
	const char *state;
	int64_t ms;
	int rc;

	rc = pga_time_left(&ms, o);
	if (rc != ENVDB_OK)
		return rc;
	if (ms < 0)
		snprintf(sql, sizeof(sql), "RESET statement_timeout");
	else
		snprintf(sql, sizeof(sql), "SET statement_timeout = %lld",
			 (long long)(ms > INT_MAX ? INT_MAX : ms));
	if (quiet)
		return pga_exec_quiet(NULL, &state, o, conn, sql, 0, NULL);
	return pga_exec(NULL, o, conn, "set statement_timeout", sql, 0, NULL);
}

int pga_connect(PGconn **out, const pga_op *o, const char *dbname, const char *user,
		const char *password, const char *role_label)
{
	const char *kw[8], *val[8];
	char timeout[24];
	PGconn *conn = NULL;
	PostgresPollingStatusType st;
	short revents;
	int64_t ms;
	int k = 0, rc;

	*out = NULL;
	rc = pga_time_left(&ms, o);
	if (rc != ENVDB_OK)
		return rc;
	/* The first dbname is expanded (a key/value string or a URI); later
	 * keywords override what it says. */
	kw[k] = "dbname";
	val[k++] = o->a->admin_conninfo;
	kw[k] = "fallback_application_name";
	val[k++] = "envdb-postgres";
	if (ms >= 0) {
		/* libpq's resolution is seconds, and it treats 1 as 2. */
		long long secs = (ms + 999) / 1000;
		snprintf(timeout, sizeof(timeout), "%lld", secs < 2 ? 2LL : secs);
		kw[k] = "connect_timeout";
		val[k++] = timeout;
	}
	if (dbname != NULL) {
		kw[k] = "dbname";
		val[k++] = dbname;
	}
	if (user != NULL) {
		kw[k] = "user";
		val[k++] = user;
	}
	if (password != NULL) {
		kw[k] = "password";
		val[k++] = password;
	}
	kw[k] = NULL;
	val[k] = NULL;

	conn = PQconnectStartParams(kw, val, 1);
	if (conn == NULL)
		return pga_fail(o, ENVDB_ERR_NOMEM, NULL, "connect as %s: out of memory",
				role_label);
	st = PQstatus(conn) == CONNECTION_BAD ? PGRES_POLLING_FAILED : PGRES_POLLING_WRITING;
	while (st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED) {
			const char *msg = PQerrorMessage(conn);
			rc = pga_fail(o, status_of_connect_message(msg), NULL,
				      "cannot connect as %s: %s", role_label, msg);
			goto fail;
		}
		rc = wait_socket(&revents, o, conn, st == PGRES_POLLING_WRITING ? POLLOUT : POLLIN,
				 "connect");
		if (rc != ENVDB_OK)
			goto fail;
		st = PQconnectPoll(conn);
	}
	PQsetNoticeProcessor(conn, notice_cb, o->a);
	if (PQserverVersion(conn) < PGA_MIN_SERVER_VERSION) {
		rc = pga_fail(o, ENVDB_ERR_NOT_SUPPORTED, NULL,
			      "server version %d is too old (postgresql 11 or newer is needed)",
			      PQserverVersion(conn));
		goto fail;
	}
	rc = apply_timeout(o, conn, 0);
	if (rc != ENVDB_OK)
		goto fail;
	*out = conn;
	return ENVDB_OK;
fail:
	PQfinish(conn);
	return rc;
}

void pga_admin_close(pga *a)
{
	if (a->admin != NULL) {
		PQfinish(a->admin);
		a->admin = NULL;
	}
	a->admin_broken = 0;
}

int pga_admin(PGconn **out, const pga_op *o)
{
	pga *a = o->a;
	const char *state;
	int64_t ms;
	int rc;

	*out = NULL;
	rc = pga_time_left(&ms, o);
	if (rc != ENVDB_OK)
		return rc;
	if (a->admin_broken)
		pga_admin_close(a);
	if (a->admin != NULL && PQstatus(a->admin) == CONNECTION_OK) {
		/* A connection left inside a transaction by an interrupted
		 * operation is rolled back first. */
		switch (PQtransactionStatus(a->admin)) {
		case PQTRANS_IDLE:
			break;
		case PQTRANS_INTRANS:
		case PQTRANS_INERROR:
			(void)pga_exec_quiet(NULL, &state, o, a->admin, "ROLLBACK", 0, NULL);
			break;
		default:
			pga_admin_close(a);
			break;
		}
		/* Setting the timeout doubles as a liveness check. */
		if (a->admin != NULL && PQtransactionStatus(a->admin) == PQTRANS_IDLE &&
		    apply_timeout(o, a->admin, 1) == ENVDB_OK) {
			*out = a->admin;
			return ENVDB_OK;
		}
		pga_admin_close(a);
	}
	pga_admin_close(a);
	rc = pga_connect(&a->admin, o, NULL, NULL, NULL, "the administrator");
	if (rc != ENVDB_OK)
		return rc;
	*out = a->admin;
	return ENVDB_OK;
}

int pga_admin_privileges(pga_admin_privs *p, const pga_op *o, PGconn *conn)
{
	PGresult *r = NULL;
	int rc;

	memset(p, 0, sizeof(*p));
	rc = pga_exec(&r, o, conn, "read the administrator's privileges",
		      "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_catalog.pg_roles "
		      "WHERE rolname = current_user",
		      0, NULL);
	if (rc != ENVDB_OK)
		return rc;
	if (PQntuples(r) == 1) {
		p->superuser = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
		p->createdb = p->superuser || strcmp(PQgetvalue(r, 0, 1), "t") == 0;
		p->createrole = p->superuser || strcmp(PQgetvalue(r, 0, 2), "t") == 0;
	}
	PQclear(r);
	return ENVDB_OK;
}
