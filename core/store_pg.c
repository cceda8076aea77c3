/*
 * core/store_pg.c — the control-plane store on PostgreSQL (libpq): the
 * backend "postgresql" of the operations table of core/store_backend.h.
 *
 * One of the backend files that contain SQL and include a driver header.
 * The control plane lives in one schema of a PostgreSQL database, named by
 * the manifest (default "envdb"), created and migrated by envdb itself
 * (version table envdb_store_version, the analogue of SQLite's
 * user_version and application_id).  Tables, partial unique indexes,
 * foreign keys with ON DELETE CASCADE and immutability triggers are
 * generated from the object definitions (schema.h) by the shared generator
 * (store_sql.c) with this file's dialect, whose CHECK constraints are
 * equivalent to the SQLite store's, so both stores hold the same
 * invariants (DESIGN.md §3).  Text columns are COLLATE "C": comparisons
 * and ORDER BY are by bytes, as in SQLite and strcmp() (the migration
 * walks organizations by `>` ranges).
 *
 * Identifiers: the schema name was validated (a lowercase identifier of at
 * most 63 bytes: PostgreSQL would silently truncate a longer one) and is
 * quoted with PQescapeIdentifier wherever it is sent; the names of the
 * definitions are validated identifiers, quoted by the generator.  Values
 * are always bound ($1...), never formatted into the SQL.
 *
 * Connection: the conninfo (a secret: it may hold a password) is never
 * logged and never part of a message; libpq's own messages name the host
 * and the user, never the password.  The session gets application_name
 * "envdb", a connect timeout and TCP keepalives (the conninfo may override
 * them), and lock, statement and idle-in-transaction timeouts derived from
 * the busy timeout (pgs_session()).  NOTICEs are not printed.
 *
 * Transactions (the contract of store_backend.h): begin(b, 0) is the
 * control plane's single write lock, as SQLite's BEGIN IMMEDIATE is.
 * Chosen: BEGIN ISOLATION LEVEL READ COMMITTED, then
 * pg_advisory_xact_lock(key of the schema name), waited for at most the
 * busy timeout (the session's lock_timeout: the server queues the waiters,
 * no polling), then ENVDB_ERR_BUSY.  Not SERIALIZABLE with retries: a
 * serialization failure can only be retried by re-running the whole
 * transaction, and the store cannot re-run its caller (provisioning calls
 * an adapter between begin and commit, and relies on nobody writing
 * meanwhile).  With one lock, every writer sees the last committed state
 * (READ COMMITTED takes a new snapshot per statement, after the lock) and
 * no commit can fail for a concurrency reason; readers are not blocked
 * (MVCC), like SQLite's WAL readers.  The lock is transaction-scoped: it
 * goes with COMMIT, ROLLBACK, and with the connection when a process dies,
 * so a killed process never keeps it.  Advisory locks are per database, so
 * two control planes (schemas) of one database have two locks.  A write
 * outside a transaction takes the same lock (an implicit transaction), as
 * SQLite's does.
 *
 * Nesting: SAVEPOINT envdbi_sp<N>.  Each write inside a transaction runs
 * under a savepoint of its own (envdbi_stmt), so a write refused by a
 * constraint leaves the transaction usable, as in SQLite (PostgreSQL would
 * abort the whole transaction); with libpq's pipeline mode the savepoint,
 * the write and its release are one round trip (and a write outside a
 * transaction, with its BEGIN, lock and COMMIT, one too).
 *
 * Deadlocks (40P01) and serialization failures (40001: only from sessions
 * that are not envdb) are retried outside a transaction with the bound of
 * the busy timeout, and reported inside one.  A lost connection inside a transaction is ENVDB_ERR_IO
 * "connection lost; the transaction was rolled back" for the rest of that
 * transaction (the server rolled it back: nothing is half-done); the
 * connection is re-established for the next call.
 *
 * Other hosts' resolve caches: triggers NOTIFY each committed change a
 * resolve depends on, and a cache LISTENs (envdbi_store_watch_start()).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sodium.h>

/* -DENVDB_PG_NO_PIPELINE: one round trip per statement even with a libpq
 * that pipelines (to compare with bench/bench_hosts). */
#ifdef ENVDB_PG_NO_PIPELINE
#undef LIBPQ_HAS_PIPELINING
#endif

#include "schema.h"
#include "store.h"
#include "store_backend.h"
#include "store_copy.h"
#include "store_pg.h"

/* SQLSTATEs raised by the control plane's own triggers (class "ED" is not
 * used by PostgreSQL): an immutable field changed; the deployment id row
 * was updated or deleted. */
#define PG_STATE_IMMUTABLE "ED001"
#define PG_STATE_DEPLOYMENT "ED002"

/* The version table: one row (application_id, version). */
#define PG_VERSION_TABLE "envdb_store_version"
/* PRAGMA application_id's analogue ("envd", the SQLite store's value). */
#define PG_APPLICATION_ID 0x656e7664
#define PG_SCHEMA_MAX 63 /* NAMEDATALEN - 1 */

/* Type OIDs of bound parameters (pg_type.h; stable since PostgreSQL 7). */
#define PG_OID_INT8 20
#define PG_OID_TEXT 25

#define PG_MAX_PARAMS 32
#define PG_PREPARED 64

typedef struct pg_prepared {
	char *sql;
	char name[24];
} pg_prepared;

struct envdbi_store_backend {
	PGconn *conn;
	envdbi_secret *conninfo; /* kept for a snapshot's own connection */
	char *schema;            /* validated identifier */
	char *qschema;           /* quoted (PQescapeIdentifier) */
	char *desc;              /* postgresql://HOST:PORT/DB schema S */
	char lock_key[24];       /* the advisory lock's key, as bound text */
	int64_t busy_timeout_ms;
	bool legacy;
	bool snapshot;     /* everything inside one transaction never committed */
	int depth;         /* transaction levels open */
	bool lost;         /* the connection broke inside the open transaction */
	bool aborted;      /* a statement failed outside a savepoint: the server
				    has aborted the open transaction */
	unsigned stmt_seq; /* names of prepared statements */
	pg_prepared prepared[PG_PREPARED];
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_jitter(void)
{
	usleep(2000 + randombytes_uniform(8000));
}

static int nomem(void)
{
	return envdbi_error(ENVDB_ERR_NOMEM, NULL, "control plane: out of memory");
}

/* A lowercase identifier PostgreSQL keeps as it is: [a-z_][a-z0-9_]*, at
 * most 63 bytes, not in the reserved pg_ prefix. */
static bool schema_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > PG_SCHEMA_MAX || strncmp(s, "pg_", 3) == 0)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

/* The advisory lock key of a control plane: 64 bits of FNV-1a over a
 * fixed prefix and the schema name (the prefix keeps it apart from the
 * keys another application may derive from the same name). */
static void lock_key_of(char out[24], const char *schema)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	static const char prefix[] = "envdb control plane:";
	for (const char *p = prefix; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	for (const char *p = schema; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	snprintf(out, 24, "%" PRId64, (int64_t)h);
}

static void quiet_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* ------------------------------------------------------------------------ */
/* The dialect (the shared generator's PostgreSQL side)                      */
/* ------------------------------------------------------------------------ */

static bool pg_field_check(envdbi_strbuf *b, const envdbi_field_def *f)
{
	const char *n = f->name;
	switch (f->type) {
	case ENVDBI_FT_UUID:
	case ENVDBI_FT_REF:
		/* what envdbi_uuid_valid() accepts: lowercase hex, dashes in place */
		envdbi_strbuf_printf(b,
				     "\"%s\" ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
				     "[0-9a-f]{12}$'",
				     n);
		return true;
	case ENVDBI_FT_SLUG:
		/* ARE: '$' is the end of the text only (no newline mode) */
		envdbi_strbuf_printf(b, "\"%s\" ~ '^[a-z0-9][a-z0-9-]{0,62}$'", n);
		return true;
	case ENVDBI_FT_ENUM:
		envdbi_strbuf_printf(b, "\"%s\" IN (", n);
		for (const char *const *e = f->enum_values; *e; e++) {
			if (e != f->enum_values)
				envdbi_strbuf_puts(b, ", ");
			envdbi_sql_quote(b, *e);
		}
		envdbi_strbuf_putc(b, ')');
		return true;
	case ENVDBI_FT_BOOL:
		envdbi_strbuf_printf(b, "\"%s\" IN (0, 1)", n);
		return true;
	case ENVDBI_FT_INT:
		if (!(f->flags & ENVDBI_FF_POSITIVE))
			return false; /* the column type is the rest of the rule */
		envdbi_strbuf_printf(b, "\"%s\" > 0", n);
		return true;
	case ENVDBI_FT_TIME:
		envdbi_strbuf_printf(b, "\"%s\" > 0", n);
		return true;
	case ENVDBI_FT_JSON:
		envdbi_strbuf_printf(b, "substr(\"%s\", 1, 1) = '{'", n);
		return true;
	case ENVDBI_FT_CIPHERTEXT:
		/* envdbi_ciphertext_plausible()'s floor, as the SQLite CHECK */
		envdbi_strbuf_printf(
			b,
			"length(\"%s\") >= 24 AND strpos(\"%s\", ' ') = 0 AND "
			"strpos(\"%s\", chr(9)) = 0 AND strpos(\"%s\", chr(10)) = 0 AND "
			"strpos(\"%s\", chr(13)) = 0",
			n, n, n, n, n);
		return true;
	default:
		return false; /* TEXT: the column type and NOT NULL are the rule */
	}
}

/* One trigger per object, calling the schema's function envdbi_immutable()
 * (created by migration 1) when an immutable field changes.  PostgreSQL
 * has no CREATE TRIGGER IF NOT EXISTS before 14: drop and create. */
static void pg_immutable_guard(envdbi_strbuf *b, const envdbi_object_def *o)
{
	bool first = true;
	envdbi_strbuf_printf(b, "DROP TRIGGER IF EXISTS \"%s_immutable\" ON \"%s\";\n", o->name,
			     o->name);
	envdbi_strbuf_printf(b,
			     "CREATE TRIGGER \"%s_immutable\" BEFORE UPDATE ON \"%s\" FOR EACH ROW "
			     "WHEN (",
			     o->name, o->name);
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		if (!(f->flags & ENVDBI_FF_IMMUTABLE))
			continue;
		envdbi_strbuf_printf(b, "%sNEW.\"%s\" IS DISTINCT FROM OLD.\"%s\"",
				     first ? "" : " OR ", f->name, f->name);
		first = false;
	}
	envdbi_strbuf_puts(b, ") EXECUTE FUNCTION \"envdbi_immutable\"();\n");
}

const envdbi_sql_dialect envdbi_sql_dialect_pg = {
	.name = "postgresql",
	.param = '$',
	.text_type = "text COLLATE \"C\"",
	.int_type = "bigint",
	.is = "IS NOT DISTINCT FROM",
	.is_not = "IS DISTINCT FROM",
	.group_concat = "string_agg",
	.field_check = pg_field_check,
	.immutable_guard = pg_immutable_guard,
};

/* ------------------------------------------------------------------------ */
/* Parameters                                                                */
/* ------------------------------------------------------------------------ */

/* Bound values as libpq takes them: text, with a type where the statement
 * cannot infer one (0: let the server infer it from the context). */
typedef struct pg_params {
	const char *v[PG_MAX_PARAMS];
	Oid t[PG_MAX_PARAMS];
	char num[PG_MAX_PARAMS][24];
	int n;
} pg_params;

static void params_add_text(pg_params *p, const char *s, Oid type)
{
	if (p->n >= PG_MAX_PARAMS)
		abort(); /* the definitions have far fewer fields: a programming error */
	p->v[p->n] = s;
	p->t[p->n] = type;
	p->n++;
}

static void params_add_int(pg_params *p, int64_t i)
{
	if (p->n >= PG_MAX_PARAMS)
		abort();
	snprintf(p->num[p->n], sizeof p->num[0], "%" PRId64, i);
	p->v[p->n] = p->num[p->n];
	p->t[p->n] = PG_OID_INT8;
	p->n++;
}

static void params_binds(pg_params *p, const envdbi_bind *b, size_t nb)
{
	for (size_t i = 0; i < nb; i++) {
		if (b[i].is_int)
			params_add_int(p, b[i].i);
		else
			params_add_text(p, b[i].s, 0);
	}
}

/* Field f of rec, as the SQLite backend binds it: TIME 0 and an optional
 * INT 0 are NULL.  `typed`: say the type (a statement that does not name
 * the column, such as the partial-index predicate over bare parameters). */
static void params_field(pg_params *p, const envdbi_field_def *f, const void *rec, bool typed)
{
	if (envdbi_ftype_is_text(f->type)) {
		params_add_text(p, envdbi_field_cstr(f, rec), typed ? PG_OID_TEXT : 0);
		return;
	}
	int64_t v = envdbi_field_int(f, rec);
	if (v == 0 && (f->type == ENVDBI_FT_TIME || (!f->required && f->type == ENVDBI_FT_INT))) {
		params_add_text(p, NULL, typed ? PG_OID_INT8 : 0);
		return;
	}
	params_add_int(p, v);
	if (!typed)
		p->t[p->n - 1] = 0;
}

/* ------------------------------------------------------------------------ */
/* Failures                                                                  */
/* ------------------------------------------------------------------------ */

static bool state_is(const char *state, const char *want)
{
	return state != NULL && strcmp(state, want) == 0;
}

/* Deadlock, serialization failure: retried outside a transaction. */
static bool state_transient(const char *state)
{
	return state_is(state, "40001") || state_is(state, "40P01");
}

static bool conn_lost(const envdbi_store_backend *b)
{
	return b->conn == NULL || PQstatus(b->conn) == CONNECTION_BAD;
}

/* The first line of libpq's message of the connection (no secret: libpq
 * names hosts and users, never a password). */
static void conn_message(const envdbi_store_backend *b, char *out, size_t cap)
{
	const char *m = b->conn ? PQerrorMessage(b->conn) : "";
	size_t n = strcspn(m, "\n");
	snprintf(out, cap, "%.*s", (int)n, m);
}

/* Classify a failed statement (r may be NULL: libpq could not even send
 * it).  Only the primary message is kept: PostgreSQL puts the values of
 * the refused row (a ciphertext, say) in the DETAIL, never there. */
static void classify(const envdbi_store_backend *b, const PGresult *r, envdbi_store_fail *f)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *cons = r ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : NULL;
	char buf[256];
	envdbi_store_fail_kind kind = ENVDBI_FAIL_IO;

	if (msg == NULL) {
		conn_message(b, buf, sizeof buf);
		msg = buf[0] ? buf : "no result from the server";
	}
	/* 08: connection exceptions; 57P01-03: the server ended the session
	 * (terminated, shutting down; FATAL: the connection goes with it, even
	 * before libpq has seen it close) */
	if ((state == NULL && conn_lost(b)) ||
	    (state != NULL && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0)))
		kind = ENVDBI_FAIL_CONNECTION_LOST;
	else if (state_is(state, "23505")) {
		size_t n = cons ? strlen(cons) : 0;
		kind = n > 5 && strcmp(cons + n - 5, "_pkey") == 0 ? ENVDBI_FAIL_PRIMARY
								   : ENVDBI_FAIL_UNIQUE;
	} else if (state_is(state, "23503"))
		kind = ENVDBI_FAIL_FOREIGN_KEY;
	else if (state_is(state, "23514"))
		kind = ENVDBI_FAIL_CHECK;
	else if (state_is(state, "23502"))
		kind = ENVDBI_FAIL_NOT_NULL;
	else if (state_is(state, PG_STATE_IMMUTABLE) || state_is(state, PG_STATE_DEPLOYMENT))
		kind = ENVDBI_FAIL_IMMUTABLE;
	else if (state != NULL && strncmp(state, "23", 2) == 0)
		kind = ENVDBI_FAIL_CONSTRAINT;
	else if (state_transient(state) || state_is(state, "55P03"))
		kind = ENVDBI_FAIL_BUSY; /* 55P03: lock_timeout, the busy timeout */
	else if (state_is(state, "53200"))
		kind = ENVDBI_FAIL_NOMEM;
	envdbi_store_fail_set(f, kind, state, msg);
}

/* Report failure f of `what` (non-write operations). */
static int report(const envdbi_store_backend *b, const envdbi_store_fail *f, const char *what)
{
	if (f->kind == ENVDBI_FAIL_CONNECTION_LOST && b->depth > 0)
		return envdbi_error(ENVDB_ERR_IO, f->native,
				    "control plane %s: %s: connection lost; the transaction was "
				    "rolled back (%s)",
				    b->desc, what, f->message);
	if (strcmp(f->native, "42501") == 0)
		return envdbi_error(ENVDB_ERR_PERMISSION, f->native, "control plane %s: %s: %s",
				    b->desc, what, f->message);
	if (strcmp(f->native, "08001") == 0)
		return envdbi_error(ENVDB_ERR_UNAVAILABLE, f->native,
				    "control plane %s: %s: cannot reconnect: %s", b->desc, what,
				    f->message);
	return envdbi_store_backend_error(b->desc, b->busy_timeout_ms, f, what);
}

static int lost_error(const envdbi_store_backend *b, const char *what)
{
	return envdbi_error(
		ENVDB_ERR_IO, "08006",
		"control plane %s: %s: connection lost; the transaction was rolled back", b->desc,
		what);
}

/* ------------------------------------------------------------------------ */
/* The connection                                                            */
/* ------------------------------------------------------------------------ */

static void prepared_clear(envdbi_store_backend *b)
{
	for (size_t i = 0; i < PG_PREPARED; i++) {
		free(b->prepared[i].sql);
		b->prepared[i].sql = NULL;
	}
}

/* The session settings, after every (re)connection.  lock_timeout is the
 * busy timeout: every wait for a lock — the write lock of begin(), a row
 * another session holds — ends with 55P03 (ENVDB_ERR_BUSY) after it.
 * statement_timeout bounds a statement at the busy timeout plus a minute
 * (a hung server, not a busy one); idle_in_transaction_session_timeout
 * ends the session of a process that stopped (SIGSTOP, a debugger) while
 * holding the write lock: at least a minute, and 12 busy timeouts, more
 * than any transaction of envdb spends between two statements. */
static int pgs_session(envdbi_store_backend *b, envdbi_store_fail *f)
{
	char path[PG_SCHEMA_MAX * 2 + 64], lock_ms[24], stmt_ms[24], idle_ms[24];
	int64_t idle = b->busy_timeout_ms * 12 > 60000 ? b->busy_timeout_ms * 12 : 60000;
	pg_params p = {.n = 0};
	PGresult *r;
	int rc = 0;

	PQsetNoticeProcessor(b->conn, quiet_notice, NULL);
	snprintf(path, sizeof path, "%s, pg_catalog, pg_temp", b->qschema);
	snprintf(lock_ms, sizeof lock_ms, "%" PRId64, b->busy_timeout_ms);
	snprintf(stmt_ms, sizeof stmt_ms, "%" PRId64, b->busy_timeout_ms + 60000);
	snprintf(idle_ms, sizeof idle_ms, "%" PRId64, idle);
	params_add_text(&p, path, PG_OID_TEXT);
	params_add_text(&p, lock_ms, PG_OID_TEXT);
	params_add_text(&p, stmt_ms, PG_OID_TEXT);
	params_add_text(&p, idle_ms, PG_OID_TEXT);
	r = PQexecParams(b->conn,
			 "SELECT set_config('search_path', $1, false), "
			 "set_config('lock_timeout', $2, false), "
			 "set_config('statement_timeout', $3, false), "
			 "set_config('idle_in_transaction_session_timeout', $4, false), "
			 "set_config('client_min_messages', 'warning', false), "
			 "set_config('standard_conforming_strings', 'on', false)",
			 p.n, p.t, p.v, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		classify(b, r, f);
		rc = ENVDB_ERR_IO;
	}
	PQclear(r);
	prepared_clear(b);
	return rc;
}

/* Connect (b->conn is NULL or bad).  The conninfo's own settings win over
 * the defaults given before it (expand_dbname). */
static int pgs_connect(envdbi_store_backend *b)
{
	char ct[24], msg[256];
	int64_t secs = (b->busy_timeout_ms + 999) / 1000;
	envdbi_store_fail f = {0};

	snprintf(ct, sizeof ct, "%" PRId64, secs < 2 ? 2 : secs);
	const char *const keys[] = {
		"application_name",    "connect_timeout",  "keepalives", "keepalives_idle",
		"keepalives_interval", "keepalives_count", "dbname",     NULL};
	const char *const vals[] = {"envdb", ct, "1", "10", "5", "3", b->conninfo->data, NULL};
	if (b->conn != NULL)
		PQfinish(b->conn);
	b->conn = PQconnectdbParams(keys, vals, 1);
	if (b->conn == NULL)
		return nomem();
	if (PQstatus(b->conn) != CONNECTION_OK) {
		bool auth = PQconnectionNeedsPassword(b->conn);
		conn_message(b, msg, sizeof msg);
		return envdbi_error(auth ? ENVDB_ERR_AUTH : ENVDB_ERR_UNAVAILABLE, "08001",
				    "control plane postgresql (schema %s): cannot connect: %s",
				    b->schema, msg);
	}
	if (b->desc == NULL) {
		const char *host = PQhost(b->conn), *port = PQport(b->conn), *db = PQdb(b->conn);
		bool sock = host != NULL && host[0] == '/';
		if (asprintf(&b->desc, "postgresql://%s%s%s:%s/%s schema %s", sock ? "[" : "",
			     host ? host : "", sock ? "]" : "", port ? port : "", db ? db : "",
			     b->schema) < 0) {
			b->desc = NULL;
			return nomem();
		}
	}
	/* PQescapeIdentifier needs a connection (its encoding) */
	if (b->qschema == NULL &&
	    (b->qschema = PQescapeIdentifier(b->conn, b->schema, strlen(b->schema))) == NULL)
		return nomem();
	if (pgs_session(b, &f) != 0)
		return report(b, &f, "set up the session");
	return 0;
}

/* The failure of a reconnection, for report(): UNAVAILABLE with libpq's
 * cause (the server is down or unreachable, as at open). */
static void reconnect_failed(const envdbi_store_backend *b, envdbi_store_fail *f)
{
	char msg[256];
	conn_message(b, msg, sizeof msg);
	envdbi_store_fail_set(f, ENVDBI_FAIL_IO, "08001", msg[0] ? msg : "cannot connect");
}

/* At depth 0: a connection that broke (the server restarted, a network
 * cut) is made again; nothing of a transaction is lost, none is open. */
static int pgs_ensure(envdbi_store_backend *b)
{
	if (!conn_lost(b))
		return 0;
	envdbi_log(ENVDB_LOG_INFO, "control plane %s: reconnecting", b->desc);
	return pgs_connect(b);
}

/* ------------------------------------------------------------------------ */
/* Statements                                                                */
/* ------------------------------------------------------------------------ */

/* A prepared statement's name for `sql` (prepared now if new); NULL when
 * the cache is full (the caller runs the text unprepared) or the prepare
 * failed (*f set, *failed true). */
static const char *prepared_get(envdbi_store_backend *b, const char *sql, const pg_params *p,
				envdbi_store_fail *f, bool *failed)
{
	pg_prepared *slot = NULL;
	PGresult *r;

	*failed = false;
	for (size_t i = 0; i < PG_PREPARED; i++) {
		if (b->prepared[i].sql == NULL) {
			if (slot == NULL)
				slot = &b->prepared[i];
		} else if (strcmp(b->prepared[i].sql, sql) == 0) {
			return b->prepared[i].name;
		}
	}
	if (slot == NULL)
		return NULL;
	snprintf(slot->name, sizeof slot->name, "envdbi_%u", ++b->stmt_seq);
	r = PQprepare(b->conn, slot->name, sql, p->n, p->t);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		classify(b, r, f);
		PQclear(r);
		*failed = true;
		return NULL;
	}
	PQclear(r);
	if ((slot->sql = strdup(sql)) == NULL) {
		/* works unnamed; the prepared one stays unused on the server */
		return NULL;
	}
	return slot->name;
}

/* Run `sql` once.  0 with *res (PQclear it), or non-zero with *f set. */
static int run_once(envdbi_store_backend *b, const char *sql, const pg_params *p, PGresult **res,
		    envdbi_store_fail *f)
{
	bool failed = false;
	const char *name = prepared_get(b, sql, p, f, &failed);
	PGresult *r;

	*res = NULL;
	if (failed)
		return -1;
	if (name != NULL)
		r = PQexecPrepared(b->conn, name, p->n, p->v, NULL, NULL, 0);
	else
		r = PQexecParams(b->conn, sql, p->n, p->t, p->v, NULL, NULL, 0);
	if (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK) {
		*res = r;
		return 0;
	}
	classify(b, r, f);
	PQclear(r);
	return -1;
}

/* A statement without parameters or result (transaction control). */
static int simple(envdbi_store_backend *b, const char *sql, envdbi_store_fail *f)
{
	PGresult *r = PQexec(b->conn, sql);
	int rc = 0;

	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
		classify(b, r, f);
		rc = -1;
	}
	PQclear(r);
	return rc;
}

/* Is a server transaction open (the caller's, or the snapshot's)? */
static bool in_tx(const envdbi_store_backend *b)
{
	return b->depth > 0 || b->snapshot;
}

/* BEGIN and the write lock (the contract's begin(b, 0)).  A connection
 * found broken at the first statement is made again once: nothing was
 * open on it. */
static int tx_begin(envdbi_store_backend *b, envdbi_store_fail *f)
{
	pg_params p = {.n = 0};
	PGresult *r = NULL;

	params_add_text(&p, b->lock_key, PG_OID_INT8);
	for (int attempt = 0;; attempt++) {
		/* the second time: libpq may not have seen the close yet */
		if ((attempt > 0 ? pgs_connect(b) : pgs_ensure(b)) != 0) {
			reconnect_failed(b, f);
			return -1;
		}
		if (simple(b, "BEGIN ISOLATION LEVEL READ COMMITTED", f) != 0) {
			if (f->kind == ENVDBI_FAIL_CONNECTION_LOST && attempt == 0)
				continue;
			return -1;
		}
		break;
	}
	if (run_once(b, "SELECT pg_advisory_xact_lock($1)", &p, &r, f) != 0) {
		envdbi_store_fail g = {0};
		if (!conn_lost(b))
			(void)simple(b, "ROLLBACK", &g);
		return -1;
	}
	PQclear(r);
	b->aborted = false;
	return 0;
}

static void tx_end(envdbi_store_backend *b, bool commit, envdbi_store_fail *f)
{
	envdbi_store_fail g = {0};
	if (conn_lost(b))
		return;
	(void)simple(b, commit ? "COMMIT" : "ROLLBACK", f ? f : &g);
}

#ifdef LIBPQ_HAS_PIPELINING
/* One step of a pipeline: a statement without parameters (sql), or the
 * caller's statement (p; its prepared name, or its text). */
typedef struct pipe_step {
	const char *sql;
	const char *name;
	const pg_params *p;
} pipe_step;

/*
 * Send `n` steps in one round trip (libpq's pipeline mode) and read their
 * results.  Returns the index of the first step that failed (*f set; the
 * server skipped the rest), or n when all succeeded; the result of step
 * `keep` (the caller's statement) goes to *res when it succeeded.  The
 * statements of a pipeline run in the transaction the steps open or the
 * one open already, exactly as sent one by one.
 */
static int pipeline(envdbi_store_backend *b, const pipe_step *st, int n, int keep, PGresult **res,
		    envdbi_store_fail *f)
{
	int failed = n, sent = 0;
	PGresult *r;

	*res = NULL;
	if (!PQenterPipelineMode(b->conn)) {
		classify(b, NULL, f);
		return 0;
	}
	for (; sent < n; sent++) {
		int ok = st[sent].p == NULL ? PQsendQueryParams(b->conn, st[sent].sql, 0, NULL,
								NULL, NULL, NULL, 0)
			 : st[sent].name != NULL
				 ? PQsendQueryPrepared(b->conn, st[sent].name, st[sent].p->n,
						       st[sent].p->v, NULL, NULL, 0)
				 : PQsendQueryParams(b->conn, st[sent].sql, st[sent].p->n,
						     st[sent].p->t, st[sent].p->v, NULL, NULL, 0);
		if (!ok)
			break;
	}
	if (sent < n || !PQpipelineSync(b->conn)) {
		classify(b, NULL, f);
		failed = sent < n ? sent : 0;
		/* what was sent is lost with the connection (or will be read below) */
		if (conn_lost(b))
			return failed;
		(void)PQpipelineSync(b->conn);
		n = sent;
	}
	for (int i = 0; i < n; i++) {
		bool got = false;
		while ((r = PQgetResult(b->conn)) != NULL) {
			ExecStatusType es = PQresultStatus(r);
			got = true;
			if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK) {
				if (i == keep && failed == n) {
					*res = r;
					continue;
				}
			} else if (failed == n || (es != PGRES_PIPELINE_ABORTED && i < failed)) {
				if (es != PGRES_PIPELINE_ABORTED) {
					classify(b, r, f);
					failed = i;
				}
			}
			PQclear(r);
		}
		if (!got && failed == n) {
			classify(b, NULL, f); /* the connection went */
			failed = i;
			break;
		}
	}
	/* the Sync's own result */
	while ((r = PQgetResult(b->conn)) != NULL) {
		ExecStatusType es = PQresultStatus(r);
		PQclear(r);
		if (es == PGRES_PIPELINE_SYNC)
			break;
	}
	if (!PQexitPipelineMode(b->conn) && failed == n) {
		classify(b, NULL, f);
		failed = 0;
	}
	if (failed < n) {
		PQclear(*res);
		*res = NULL;
	}
	return failed;
}
#endif

/*
 * Run a statement that writes.  Inside a transaction: under a savepoint
 * of its own, rolled back when the statement fails (the transaction stays
 * usable); a transient conflict is reported.  Outside: an implicit
 * transaction with the write lock (as SQLite's implicit write
 * transaction), retried on a transient conflict until the busy timeout.
 * With libpq's pipeline mode each is one round trip (the savepoint, the
 * statement and its release; or BEGIN, the lock, the statement and
 * COMMIT), and a failure costs one more.
 */
static int run_write(envdbi_store_backend *b, const char *sql, const pg_params *p, PGresult **res,
		     envdbi_store_fail *f)
{
	int64_t deadline = mono_ms() + b->busy_timeout_ms;
	envdbi_store_fail g = {0};
	bool reconnected = false;

	*res = NULL;
	for (;;) {
#ifdef LIBPQ_HAS_PIPELINING
		bool failed_prepare = false;
		const char *name;
		pg_params lock = {.n = 0};
		int at;

		if (in_tx(b) && b->lost) {
			envdbi_store_fail_set(f, ENVDBI_FAIL_CONNECTION_LOST, "08006",
					      "connection lost");
			return -1;
		}
		if (!in_tx(b) && pgs_ensure(b) != 0) {
			reconnect_failed(b, f);
			return -1;
		}
		name = prepared_get(b, sql, p, f, &failed_prepare);
		if (failed_prepare) {
			if (f->kind == ENVDBI_FAIL_CONNECTION_LOST && in_tx(b)) {
				b->lost = true;
			} else if (in_tx(b)) {
				b->aborted = true;
			} else if (f->kind == ENVDBI_FAIL_CONNECTION_LOST && !reconnected) {
				/* nothing is open: make the connection again, once */
				reconnected = true;
				if (pgs_connect(b) != 0) {
					reconnect_failed(b, f);
					return -1;
				}
				continue;
			}
			return -1;
		}
		if (in_tx(b)) {
			pipe_step steps[] = {{"SAVEPOINT envdbi_stmt", NULL, NULL},
					     {sql, name, p},
					     {"RELEASE SAVEPOINT envdbi_stmt", NULL, NULL}};
			at = pipeline(b, steps, 3, 1, res, f);
			if (at == 3)
				return 0;
			if (f->kind == ENVDBI_FAIL_CONNECTION_LOST) {
				b->lost = true;
				return -1;
			}
			if (at == 0) { /* the savepoint itself: the transaction had failed */
				b->aborted = true;
				return -1;
			}
			if (simple(b, "ROLLBACK TO SAVEPOINT envdbi_stmt", &g) != 0 ||
			    simple(b, "RELEASE SAVEPOINT envdbi_stmt", &g) != 0) {
				if (g.kind == ENVDBI_FAIL_CONNECTION_LOST)
					b->lost = true;
				else
					b->aborted = true;
			}
			return -1;
		}
		params_add_text(&lock, b->lock_key, PG_OID_INT8);
		{
			pipe_step steps[] = {{"BEGIN ISOLATION LEVEL READ COMMITTED", NULL, NULL},
					     {"SELECT pg_advisory_xact_lock($1)", NULL, &lock},
					     {sql, name, p},
					     {"COMMIT", NULL, NULL}};
			at = pipeline(b, steps, 4, 2, res, f);
		}
		if (at == 4)
			return 0;
		if (f->kind == ENVDBI_FAIL_CONNECTION_LOST) {
			if (at == 3) {
				envdbi_store_fail_set(f, ENVDBI_FAIL_CONNECTION_LOST, f->native,
						      "connection lost during COMMIT: whether the "
						      "change was committed is unknown");
				return -1;
			}
			/* found broken before the COMMIT: nothing was committed, so
			 * the whole of it is sent again once, on a new connection */
			if (!reconnected) {
				reconnected = true;
				if (pgs_connect(b) != 0) {
					reconnect_failed(b, f);
					return -1;
				}
				continue;
			}
			return -1;
		}
		tx_end(b, false, NULL); /* the failed transaction */
#else
		if (in_tx(b)) {
			if (b->lost) {
				envdbi_store_fail_set(f, ENVDBI_FAIL_CONNECTION_LOST, "08006",
						      "connection lost");
				return -1;
			}
			if (simple(b, "SAVEPOINT envdbi_stmt", f) != 0) {
				if (f->kind == ENVDBI_FAIL_CONNECTION_LOST)
					b->lost = true;
				return -1;
			}
			if (run_once(b, sql, p, res, f) == 0) {
				if (simple(b, "RELEASE SAVEPOINT envdbi_stmt", f) == 0)
					return 0;
				/* the write happened, but the transaction is gone */
				PQclear(*res);
				*res = NULL;
				if (f->kind == ENVDBI_FAIL_CONNECTION_LOST)
					b->lost = true;
				else
					b->aborted = true;
				return -1;
			}
			if (f->kind == ENVDBI_FAIL_CONNECTION_LOST) {
				b->lost = true;
				return -1;
			}
			if (simple(b, "ROLLBACK TO SAVEPOINT envdbi_stmt", &g) != 0 ||
			    simple(b, "RELEASE SAVEPOINT envdbi_stmt", &g) != 0) {
				if (g.kind == ENVDBI_FAIL_CONNECTION_LOST)
					b->lost = true;
				else
					b->aborted = true;
			}
			return -1;
		}
		if (tx_begin(b, f) != 0)
			return -1;
		if (run_once(b, sql, p, res, f) == 0) {
			envdbi_store_fail c = {0};
			if (simple(b, "COMMIT", &c) == 0)
				return 0;
			PQclear(*res);
			*res = NULL;
			if (c.kind == ENVDBI_FAIL_CONNECTION_LOST)
				envdbi_store_fail_set(f, ENVDBI_FAIL_CONNECTION_LOST, c.native,
						      "connection lost during COMMIT: whether the "
						      "change was committed is unknown");
			else
				*f = c;
			return -1;
		}
		tx_end(b, false, NULL);
#endif
		if (f->kind == ENVDBI_FAIL_BUSY && state_transient(f->native) &&
		    mono_ms() < deadline) {
			pause_jitter();
			continue;
		}
		return -1;
	}
}

/*
 * Run a statement that only reads.  Inside a transaction a failure aborts
 * the server's transaction (noted: commit then reports it).  Outside, a
 * transient conflict is retried until the busy timeout, and a connection
 * found broken is made again once (a read can be repeated).
 */
static int run_read(envdbi_store_backend *b, const char *sql, const pg_params *p, PGresult **res,
		    envdbi_store_fail *f)
{
	int64_t deadline = mono_ms() + b->busy_timeout_ms;
	bool reconnected = false;

	*res = NULL;
	for (;;) {
		if (in_tx(b) && b->lost) {
			envdbi_store_fail_set(f, ENVDBI_FAIL_CONNECTION_LOST, "08006",
					      "connection lost");
			return -1;
		}
		if (!in_tx(b) && (reconnected ? pgs_connect(b) : pgs_ensure(b)) != 0) {
			reconnect_failed(b, f);
			return -1;
		}
		if (run_once(b, sql, p, res, f) == 0)
			return 0;
		if (in_tx(b)) {
			if (f->kind == ENVDBI_FAIL_CONNECTION_LOST)
				b->lost = true;
			else
				b->aborted = true;
			return -1;
		}
		if (f->kind == ENVDBI_FAIL_CONNECTION_LOST && !reconnected) {
			reconnected = true;
			continue;
		}
		if (f->kind == ENVDBI_FAIL_BUSY && state_transient(f->native) &&
		    mono_ms() < deadline) {
			pause_jitter();
			continue;
		}
		return -1;
	}
}

/* Read + report: the non-write operations. */
static int query(envdbi_store_backend *b, const char *sql, const pg_params *p, PGresult **res,
		 const char *what)
{
	envdbi_store_fail f = {0};
	if (run_read(b, sql, p, res, &f) != 0)
		return report(b, &f, what);
	return 0;
}

/* `sql` (written with ?N) with $N placeholders; malloc'd, NULL on ENOMEM. */
static char *dollar(const char *sql)
{
	envdbi_strbuf out = ENVDBI_STRBUF_INIT;
	envdbi_sql_params(&out, sql, '$');
	if (out.failed) {
		envdbi_strbuf_free(&out);
		return NULL;
	}
	return out.data;
}

/* ------------------------------------------------------------------------ */
/* Rows                                                                      */
/* ------------------------------------------------------------------------ */

static int64_t cell_int(const PGresult *r, int row, int col)
{
	const char *v;
	if (PQgetisnull(r, row, col))
		return 0;
	v = PQgetvalue(r, row, col);
	if (v[0] == 't' && v[1] == '\0')
		return 1; /* a boolean (EXISTS) */
	if (v[0] == 'f' && v[1] == '\0')
		return 0;
	return strtoll(v, NULL, 10);
}

/* Row `row` of r (columns in definition order from `col0`) as a record. */
static int read_record(void **out, const envdbi_object_def *o, const PGresult *r, int row, int col0)
{
	void *rec = calloc(1, o->record_size);
	if (rec == NULL)
		return nomem();
	for (size_t i = 0; i < o->n_fields; i++) {
		const envdbi_field_def *f = &o->fields[i];
		int col = col0 + (int)i;
		if (envdbi_ftype_is_text(f->type)) {
			if (!PQgetisnull(r, row, col) &&
			    (*envdbi_field_str(f, rec) = strdup(PQgetvalue(r, row, col))) == NULL) {
				envdbi_record_free(o, rec);
				return nomem();
			}
		} else {
			envdbi_field_set_int(f, rec, cell_int(r, row, col));
		}
	}
	*out = rec;
	return 0;
}

static int read_records(void ***out, size_t *n, const envdbi_object_def *o, const PGresult *r)
{
	int rows = PQntuples(r), rc;
	void **v;

	*out = NULL;
	*n = 0;
	if (rows == 0)
		return 0;
	if ((v = calloc((size_t)rows, sizeof *v)) == NULL)
		return nomem();
	for (int i = 0; i < rows; i++) {
		if ((rc = read_record(&v[i], o, r, i, 0)) != 0) {
			for (int k = 0; k < i; k++)
				envdbi_record_free(o, v[k]);
			free(v);
			return rc;
		}
	}
	*out = v;
	*n = (size_t)rows;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Transactions                                                              */
/* ------------------------------------------------------------------------ */

/* Level L (opened by begin(b, L)) is savepoint envdbi_sp<L> unless it is
 * the outermost of a normal store (the BEGIN); a snapshot's outermost is a
 * savepoint of its own never-committed transaction. */
static bool level_is_begin(const envdbi_store_backend *b, int level)
{
	return level == 0 && !b->snapshot;
}

static int pg_begin(envdbi_store_backend *b, int depth)
{
	envdbi_store_fail f = {0};
	char sql[48];

	if (level_is_begin(b, depth)) {
		b->lost = false;
		b->aborted = false;
		if (tx_begin(b, &f) != 0)
			return report(b, &f, "begin transaction");
		b->depth = 1;
		return 0;
	}
	if (b->lost)
		return lost_error(b, "begin a nested transaction");
	snprintf(sql, sizeof sql, "SAVEPOINT envdbi_sp%d", depth);
	if (simple(b, sql, &f) != 0) {
		if (f.kind == ENVDBI_FAIL_CONNECTION_LOST && in_tx(b))
			b->lost = true;
		return report(b, &f, "begin a nested transaction");
	}
	b->depth = depth + 1;
	return 0;
}

static void undo_level(envdbi_store_backend *b, int level)
{
	envdbi_store_fail g = {0};
	char sql[96];

	if (conn_lost(b))
		return;
	snprintf(sql, sizeof sql, "ROLLBACK TO SAVEPOINT envdbi_sp%d", level);
	if (simple(b, sql, &g) == 0) {
		/* a savepoint older than a failure: the transaction works again */
		b->aborted = false;
		snprintf(sql, sizeof sql, "RELEASE SAVEPOINT envdbi_sp%d", level);
		(void)simple(b, sql, &g);
	}
}

static int pg_commit(envdbi_store_backend *b, int depth)
{
	envdbi_store_fail f = {0};
	int level = depth - 1, rc = 0;
	char sql[48];

	b->depth = level;
	if (b->lost) {
		if (level == 0)
			b->lost = false; /* closed; the next begin reconnects */
		return lost_error(b, "commit");
	}
	if (level_is_begin(b, level)) {
		PGresult *r = PQexec(b->conn, "COMMIT");
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			classify(b, r, &f);
			if (f.kind == ENVDBI_FAIL_CONNECTION_LOST)
				rc = envdbi_error(
					ENVDB_ERR_IO, f.native,
					"control plane %s: commit: connection lost during "
					"COMMIT: whether the transaction was committed is "
					"unknown",
					b->desc);
			else
				rc = report(b, &f, "commit");
		} else if (strcmp(PQcmdStatus(r), "ROLLBACK") == 0) {
			/* an earlier statement failed and aborted it */
			rc = envdbi_error(
				ENVDB_ERR_IO, NULL,
				"control plane %s: commit: a statement of the transaction "
				"failed, so it was rolled back",
				b->desc);
		}
		PQclear(r);
		b->aborted = false;
		return rc;
	}
	snprintf(sql, sizeof sql, "RELEASE SAVEPOINT envdbi_sp%d", level);
	if (b->aborted || simple(b, sql, &f) != 0) {
		if (f.kind == ENVDBI_FAIL_CONNECTION_LOST) {
			b->lost = true;
			return lost_error(b, "commit a nested transaction");
		}
		undo_level(b, level);
		if (f.kind == ENVDBI_FAIL_NONE)
			return envdbi_error(ENVDB_ERR_IO, NULL,
					    "control plane %s: commit a nested transaction: a "
					    "statement in it failed, so it was rolled back",
					    b->desc);
		return report(b, &f, "commit a nested transaction");
	}
	return 0;
}

static void pg_rollback(envdbi_store_backend *b, int depth)
{
	int level = depth - 1;

	b->depth = level;
	if (b->lost) {
		if (level == 0)
			b->lost = false;
		return;
	}
	if (level_is_begin(b, level)) {
		tx_end(b, false, NULL);
		b->aborted = false;
		return;
	}
	undo_level(b, level);
}

/* ------------------------------------------------------------------------ */
/* Rows                                                                      */
/* ------------------------------------------------------------------------ */

static int pg_select(envdbi_store_backend *b, const envdbi_object_def *o, envdbi_query q,
		     const envdbi_bind *v, size_t nv, void ***rows, size_t *n)
{
	envdbi_strbuf sql = ENVDBI_STRBUF_INIT;
	envdbi_bind used[PG_MAX_PARAMS];
	size_t nused = 0;
	pg_params p = {.n = 0};
	PGresult *r = NULL;
	int rc;

	*rows = NULL;
	*n = 0;
	if (nv > PG_MAX_PARAMS)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "%s: too many parameters", o->name);
	if ((rc = envdbi_sql_query(&sql, &envdbi_sql_dialect_pg, o, q, v, nv, used, &nused)) != 0)
		goto out;
	if (sql.failed) {
		rc = nomem();
		goto out;
	}
	params_binds(&p, used, nused);
	if ((rc = query(b, sql.data, &p, &r, o->name)) != 0)
		goto out;
	rc = read_records(rows, n, o, r);
out:
	PQclear(r);
	envdbi_strbuf_free(&sql);
	return rc;
}

/* The statements generated per object, made once per process. */
enum { GEN_INSERT, GEN_UPDATE, GEN__N };
#define GEN_OBJECTS 8
static char *gen_sql[GEN__N][GEN_OBJECTS];
static pthread_once_t gen_once = PTHREAD_ONCE_INIT;

static void gen_init(void)
{
	for (size_t i = 0; i < envdbi_schema_n_objects && i < GEN_OBJECTS; i++) {
		envdbi_strbuf ins = ENVDBI_STRBUF_INIT, upd = ENVDBI_STRBUF_INIT;
		envdbi_sql_insert(&ins, &envdbi_sql_dialect_pg, &envdbi_schema_objects[i]);
		envdbi_sql_update(&upd, &envdbi_sql_dialect_pg, &envdbi_schema_objects[i]);
		gen_sql[GEN_INSERT][i] = ins.failed ? NULL : ins.data;
		gen_sql[GEN_UPDATE][i] = upd.failed ? NULL : upd.data;
		if (ins.failed)
			envdbi_strbuf_free(&ins);
		if (upd.failed)
			envdbi_strbuf_free(&upd);
	}
}

/* The INSERT/UPDATE of `o` (owned by this file), NULL on ENOMEM or for an
 * object outside the built-in table (then *tmp holds a made one). */
static const char *gen_get(int kind, const envdbi_object_def *o, envdbi_strbuf *tmp)
{
	uintptr_t p = (uintptr_t)o, base = (uintptr_t)envdbi_schema_objects;
	size_t i;

	pthread_once(&gen_once, gen_init);
	if (p >= base && p < base + envdbi_schema_n_objects * sizeof(*o) &&
	    (i = (p - base) / sizeof(*o)) < GEN_OBJECTS && gen_sql[kind][i] != NULL)
		return gen_sql[kind][i];
	if (kind == GEN_INSERT)
		envdbi_sql_insert(tmp, &envdbi_sql_dialect_pg, o);
	else
		envdbi_sql_update(tmp, &envdbi_sql_dialect_pg, o);
	return tmp->failed ? NULL : tmp->data;
}

static int pg_insert(envdbi_store_backend *b, const envdbi_object_def *o, const void *rec,
		     envdbi_store_fail *fail)
{
	envdbi_strbuf tmp = ENVDBI_STRBUF_INIT;
	const char *sql = gen_get(GEN_INSERT, o, &tmp);
	pg_params p = {.n = 0};
	PGresult *r = NULL;
	int rc = 0;

	if (sql == NULL) {
		envdbi_store_fail_set(fail, ENVDBI_FAIL_NOMEM, NULL, "out of memory");
		envdbi_strbuf_free(&tmp);
		return ENVDB_ERR_NOMEM;
	}
	for (size_t i = 0; i < o->n_fields; i++)
		params_field(&p, &o->fields[i], rec, false);
	if (run_write(b, sql, &p, &r, fail) != 0)
		rc = ENVDB_ERR_IO; /* the neutral layer maps the classification */
	PQclear(r);
	envdbi_strbuf_free(&tmp);
	return rc;
}

static int pg_update(envdbi_store_backend *b, const envdbi_object_def *o, const void *rec,
		     envdbi_store_fail *fail)
{
	envdbi_strbuf tmp = ENVDBI_STRBUF_INIT;
	const char *sql = gen_get(GEN_UPDATE, o, &tmp);
	pg_params p = {.n = 0};
	PGresult *r = NULL;
	int rc = 0;

	if (sql == NULL) {
		envdbi_store_fail_set(fail, ENVDBI_FAIL_NOMEM, NULL, "out of memory");
		envdbi_strbuf_free(&tmp);
		return ENVDB_ERR_NOMEM;
	}
	for (size_t i = 0; i < o->n_fields; i++)
		if (!(o->fields[i].flags & ENVDBI_FF_IMMUTABLE))
			params_field(&p, &o->fields[i], rec, false);
	params_field(&p, envdbi_schema_primary(o), rec, false);
	if (run_write(b, sql, &p, &r, fail) != 0)
		rc = ENVDB_ERR_IO;
	PQclear(r);
	envdbi_strbuf_free(&tmp);
	return rc;
}

static int64_t changed_rows(const PGresult *r)
{
	const char *t = PQcmdTuples((PGresult *)r);
	return t && *t ? strtoll(t, NULL, 10) : 0;
}

static int pg_exec(envdbi_store_backend *b, envdbi_stmt s, const envdbi_bind *v, size_t nv,
		   int64_t *changes, envdbi_store_fail *fail)
{
	char *sql = dollar(envdbi_sql_stmt_text(s));
	pg_params p = {.n = 0};
	PGresult *r = NULL;
	int rc = 0;

	if (changes != NULL)
		*changes = 0;
	if (sql == NULL || nv > PG_MAX_PARAMS) {
		envdbi_store_fail_set(fail, ENVDBI_FAIL_NOMEM, NULL, "out of memory");
		free(sql);
		return ENVDB_ERR_NOMEM;
	}
	params_binds(&p, v, nv);
	if (run_write(b, sql, &p, &r, fail) != 0)
		rc = ENVDB_ERR_IO;
	else if (changes != NULL)
		*changes = changed_rows(r);
	PQclear(r);
	free(sql);
	return rc;
}

static int pg_ints(envdbi_store_backend *b, envdbi_ints q, const envdbi_bind *v, size_t nv,
		   int64_t *out, size_t ncols, const char *what)
{
	char *sql = dollar(envdbi_sql_ints_text(q));
	pg_params p = {.n = 0};
	PGresult *r = NULL;
	int rc;

	for (size_t i = 0; i < ncols; i++)
		out[i] = 0;
	if (sql == NULL || nv > PG_MAX_PARAMS) {
		free(sql);
		return nomem();
	}
	params_binds(&p, v, nv);
	if ((rc = query(b, sql, &p, &r, what)) == 0) {
		if (PQntuples(r) < 1 || (size_t)PQnfields(r) < ncols)
			rc = envdbi_error(ENVDB_ERR_IO, NULL, "control plane %s: %s: no row",
					  b->desc, what);
		else
			for (size_t i = 0; i < ncols; i++)
				out[i] = cell_int(r, 0, (int)i);
	}
	PQclear(r);
	free(sql);
	return rc;
}

static int pg_strings(envdbi_store_backend *b, envdbi_strings q, const envdbi_bind *v, size_t nv,
		      char ***out, size_t *n, const char *what)
{
	char *sql = dollar(envdbi_sql_strings_text(q));
	pg_params p = {.n = 0};
	PGresult *r = NULL;
	char **list = NULL;
	size_t count = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if (sql == NULL || nv > PG_MAX_PARAMS) {
		free(sql);
		return nomem();
	}
	params_binds(&p, v, nv);
	if ((rc = query(b, sql, &p, &r, what)) != 0)
		goto out;
	if (PQntuples(r) > 0 && (list = calloc((size_t)PQntuples(r), sizeof *list)) == NULL) {
		rc = nomem();
		goto out;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		if (PQgetisnull(r, i, 0))
			continue;
		if ((list[count] = strdup(PQgetvalue(r, i, 0))) == NULL) {
			envdbi_store_strings_free(list, count);
			list = NULL;
			count = 0;
			rc = nomem();
			goto out;
		}
		count++;
	}
	*out = list;
	*n = count;
	list = NULL;
out:
	free(list);
	PQclear(r);
	free(sql);
	return rc;
}

static int pg_find_conflict(envdbi_store_backend *b, const envdbi_object_def *o,
			    const envdbi_index_def *ix, const void *rec, void **other)
{
	envdbi_strbuf sql = ENVDBI_STRBUF_INIT;
	pg_params p = {.n = 0};
	PGresult *r = NULL;
	int rc = 0;

	*other = NULL;
	if (ix->where != NULL) {
		envdbi_sql_matches_where(&sql, &envdbi_sql_dialect_pg, o, ix);
		if (sql.failed)
			return nomem();
		for (size_t i = 0; i < o->n_fields; i++)
			params_field(&p, &o->fields[i], rec, true);
		rc = query(b, sql.data, &p, &r, o->name);
		envdbi_strbuf_free(&sql);
		if (rc != 0)
			return rc;
		bool match = PQntuples(r) > 0;
		PQclear(r);
		r = NULL;
		if (!match)
			return 0;
	}
	p.n = 0;
	envdbi_sql_conflict(&sql, &envdbi_sql_dialect_pg, o, ix);
	if (sql.failed)
		return nomem();
	params_field(&p, envdbi_schema_primary(o), rec, false);
	for (size_t c = 0; c < ENVDBI_MAX_INDEX_COLUMNS && ix->columns[c]; c++)
		params_field(&p, envdbi_schema_field(o, ix->columns[c]), rec, false);
	if ((rc = query(b, sql.data, &p, &r, o->name)) == 0 && PQntuples(r) > 0)
		rc = read_record(other, o, r, 0, 0);
	PQclear(r);
	envdbi_strbuf_free(&sql);
	return rc;
}

/* The resolve statement with $N placeholders, made once per process. */
static char *resolve_sql;
static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;

static void resolve_init(void)
{
	resolve_sql = dollar(envdbi_sql_resolve);
}

static int pg_resolve_get(envdbi_store_backend *b, envdbi_resolve_row **out, const char *org,
			  const char *slug, const char *user, int64_t now)
{
	enum {
		C_ENV,
		C_STATUS,
		C_ROLE,
		C_DB,
		C_DRIVER,
		C_DBNAME,
		C_URL,
		C_AUTH,
		C_CRED,
		C_CT,
		C_HANDLE,
		C_EXP,
		C_PREV,
		C_PCT,
		C_PHANDLE,
		C_PEXP,
		C_AADV,
		C_PAADV,
		C__N
	};
	size_t len[C__N], total = 0;
	pg_params p = {.n = 0};
	envdbi_resolve_row *row;
	PGresult *r = NULL;
	char *at;
	int rc;

	*out = NULL;
	pthread_once(&resolve_once, resolve_init);
	if (resolve_sql == NULL)
		return nomem();
	params_add_text(&p, org, 0);
	params_add_text(&p, slug, 0);
	params_add_text(&p, user, 0);
	params_add_int(&p, now);
	if ((rc = query(b, resolve_sql, &p, &r, "resolve")) != 0)
		return rc;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return ENVDB_ERR_NOT_FOUND; /* the caller reports */
	}
	if (PQnfields(r) < C__N) {
		PQclear(r);
		return envdbi_error(ENVDB_ERR_IO, NULL, "control plane %s: resolve: %d columns",
				    b->desc, PQnfields(r));
	}
	for (int i = 0; i < C__N; i++) {
		len[i] = 0;
		if (i == C_EXP || i == C_PEXP || i == C_AADV || i == C_PAADV ||
		    PQgetisnull(r, 0, i))
			continue;
		len[i] = (size_t)PQgetlength(r, 0, i) + 1;
		total += len[i];
	}
	if ((row = calloc(1, sizeof(*row) + total)) == NULL) {
		PQclear(r);
		return nomem();
	}
	const char **field[C__N] = {&row->env_id,
				    &row->env_status,
				    &row->role,
				    &row->db_id,
				    &row->driver,
				    &row->database_name,
				    &row->database_url,
				    &row->authorization,
				    &row->cred_id,
				    &row->cred_ciphertext,
				    &row->cred_handle,
				    NULL,
				    &row->prev_id,
				    &row->prev_ciphertext,
				    &row->prev_handle,
				    NULL,
				    NULL,
				    NULL};
	at = row->buf;
	for (int i = 0; i < C__N; i++) {
		if (len[i] == 0)
			continue;
		memcpy(at, PQgetvalue(r, 0, i), len[i]);
		*field[i] = at;
		at += len[i];
	}
	row->cred_expires_at = cell_int(r, 0, C_EXP);
	row->prev_expires_at = cell_int(r, 0, C_PEXP);
	row->cred_aad_version = cell_int(r, 0, C_AADV);
	row->prev_aad_version = cell_int(r, 0, C_PAADV);
	PQclear(r);
	*out = row;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* envdb check                                                               */
/* ------------------------------------------------------------------------ */

static int pg_find_duplicates(envdbi_store_backend *b, const envdbi_object_def *o,
			      const envdbi_index_def *ix, envdbi_dup_cb cb, void *cb_ctx)
{
	envdbi_strbuf groups = ENVDBI_STRBUF_INIT, ids = ENVDBI_STRBUF_INIT;
	pg_params none = {.n = 0};
	PGresult *g = NULL;
	size_t nc = 0;
	int rc;

	while (nc < ENVDBI_MAX_INDEX_COLUMNS && ix->columns[nc])
		nc++;
	envdbi_sql_duplicates(&groups, &ids, &envdbi_sql_dialect_pg, o, ix);
	if (groups.failed || ids.failed) {
		rc = nomem();
		goto out;
	}
	if ((rc = query(b, groups.data, &none, &g, o->name)) != 0)
		goto out;
	for (int row = 0; row < PQntuples(g) && rc == 0; row++) {
		pg_params p = {.n = 0};
		PGresult *r = NULL;
		for (size_t c = 0; c < nc; c++)
			params_add_text(&p,
					PQgetisnull(g, row, (int)c + 1)
						? NULL
						: PQgetvalue(g, row, (int)c + 1),
					0);
		if ((rc = query(b, ids.data, &p, &r, o->name)) == 0 && PQntuples(r) > 0)
			cb(cb_ctx, o, ix, PQgetvalue(g, row, 0), PQgetvalue(r, 0, 0));
		PQclear(r);
	}
out:
	PQclear(g);
	envdbi_strbuf_free(&groups);
	envdbi_strbuf_free(&ids);
	return rc;
}

static int pg_find_dangling(envdbi_store_backend *b, const envdbi_object_def *o,
			    envdbi_dangling_cb cb, void *cb_ctx)
{
	int rc = 0;
	for (size_t i = 0; i < o->n_fields && rc == 0; i++) {
		const envdbi_field_def *f = &o->fields[i];
		envdbi_strbuf sql = ENVDBI_STRBUF_INIT;
		pg_params none = {.n = 0};
		PGresult *r = NULL;
		if (f->type != ENVDBI_FT_REF)
			continue;
		envdbi_sql_dangling(&sql, &envdbi_sql_dialect_pg, o, f);
		if (sql.failed)
			rc = nomem();
		else if ((rc = query(b, sql.data, &none, &r, o->name)) == 0)
			for (int row = 0; row < PQntuples(r); row++)
				cb(cb_ctx, o, f, PQgetvalue(r, row, 0), PQgetvalue(r, row, 1));
		PQclear(r);
		envdbi_strbuf_free(&sql);
	}
	return rc;
}

/* count(*) of a catalog query with text parameters a, b, c (NULL: fewer). */
static int catalog_count(envdbi_store_backend *b, const char *sql, const char *x, const char *y,
			 const char *z, int64_t *found)
{
	pg_params p = {.n = 0};
	PGresult *r = NULL;
	int rc;

	*found = 0;
	params_add_text(&p, x, PG_OID_TEXT);
	if (y != NULL)
		params_add_text(&p, y, PG_OID_TEXT);
	if (z != NULL)
		params_add_text(&p, z, PG_OID_TEXT);
	if ((rc = query(b, sql, &p, &r, "read the catalog")) == 0 && PQntuples(r) > 0)
		*found = cell_int(r, 0, 0);
	PQclear(r);
	return rc;
}

#define CAT_TABLE                                                                                  \
	"SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON "            \
	"n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND "                      \
	"c.relkind IN ('r', 'p')"
#define CAT_COLUMN                                                                                 \
	"SELECT count(*) FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON "            \
	"c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "             \
	"WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND a.attnum > 0 AND "         \
	"NOT a.attisdropped"
/* 0: missing; 1: a non-unique index; 2: a unique one */
#define CAT_INDEX                                                                                  \
	"SELECT coalesce(max(CASE WHEN i.indisunique THEN 2 ELSE 1 END), 0) FROM "                 \
	"pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid "              \
	"JOIN pg_catalog.pg_class t ON t.oid = i.indrelid JOIN pg_catalog.pg_namespace n "         \
	"ON n.oid = t.relnamespace WHERE n.nspname = $1 AND t.relname = $2 AND "                   \
	"ic.relname = $3"
#define CAT_TRIGGER                                                                                \
	"SELECT count(*) FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class t ON "              \
	"t.oid = g.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace WHERE "        \
	"n.nspname = $1 AND t.relname = $2 AND g.tgname = $3 AND NOT g.tgisinternal AND "          \
	"g.tgenabled <> 'D'"

/* The physical schema against the definitions, from the catalog of this
 * control plane's schema: tables, columns, unique indexes (with their
 * uniqueness), the immutability triggers (and that they are enabled). */
static int pg_verify_schema(envdbi_store_backend *b, bool legacy, envdbi_schema_problem_cb cb,
			    void *cb_ctx)
{
	int rc = 0;
	for (size_t i = 0; i < envdbi_schema_n_objects && rc == 0; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		int64_t found = 0;
		char msg[256];
		bool immutable = false;

		if (o->legacy && !legacy)
			continue;
		if ((rc = catalog_count(b, CAT_TABLE, b->schema, o->name, NULL, &found)) != 0)
			break;
		if (!found) {
			cb(cb_ctx, o->name, o->name, "table is missing");
			continue;
		}
		for (size_t k = 0; k < o->n_fields && rc == 0; k++) {
			rc = catalog_count(b, CAT_COLUMN, b->schema, o->name, o->fields[k].name,
					   &found);
			if (rc == 0 && !found) {
				snprintf(msg, sizeof msg, "column %s is missing",
					 o->fields[k].name);
				cb(cb_ctx, o->name, o->fields[k].name, msg);
			}
			if (o->fields[k].flags & ENVDBI_FF_IMMUTABLE)
				immutable = true;
		}
		for (size_t k = 0; k < o->n_indexes && rc == 0; k++) {
			const envdbi_index_def *ix = &o->indexes[k];
			if ((rc = catalog_count(b, CAT_INDEX, b->schema, o->name, ix->name,
						&found)) != 0)
				break;
			if (found == 0) {
				snprintf(msg, sizeof msg, "%sindex %s is missing (%s)",
					 ix->unique ? "unique " : "", ix->name, ix->description);
				cb(cb_ctx, o->name, ix->name, msg);
			} else if ((found == 2) != ix->unique) {
				snprintf(msg, sizeof msg, "index %s should %sbe unique (%s)",
					 ix->name, ix->unique ? "" : "not ", ix->description);
				cb(cb_ctx, o->name, ix->name, msg);
			}
		}
		if (immutable && rc == 0) {
			char trig[128];
			snprintf(trig, sizeof trig, "%s_immutable", o->name);
			rc = catalog_count(b, CAT_TRIGGER, b->schema, o->name, trig, &found);
			if (rc == 0 && !found) {
				snprintf(msg, sizeof msg,
					 "trigger %s is missing or disabled (immutable fields)",
					 trig);
				cb(cb_ctx, o->name, trig, msg);
			}
		}
	}
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Schema: creation and migrations                                           */
/* ------------------------------------------------------------------------ */

static int ddl(envdbi_store_backend *b, const char *sql, const char *what)
{
	envdbi_store_fail f = {0};
	if (simple(b, sql, &f) != 0) {
		b->aborted = true;
		return report(b, &f, what);
	}
	return 0;
}

/* Run `sql` (no result) with parameters inside the migration. */
static int stmt(envdbi_store_backend *b, const char *sql, const pg_params *p, const char *what)
{
	envdbi_store_fail f = {0};
	PGresult *r = NULL;
	if (run_once(b, sql, p, &r, &f) != 0) {
		b->aborted = true;
		return report(b, &f, what);
	}
	PQclear(r);
	return 0;
}

static int create_objects(envdbi_store_backend *b, bool legacy)
{
	for (size_t i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		char *sql = NULL;
		int rc;
		if (o->legacy != legacy)
			continue;
		if ((rc = envdbi_sql_ddl(&sql, &envdbi_sql_dialect_pg, o)) != 0)
			return rc;
		rc = ddl(b, sql, o->name);
		free(sql);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* The function every immutability trigger calls: SQLSTATE ED001, which
 * the classification maps to ENVDBI_FAIL_IMMUTABLE. */
static const char immutable_fn[] =
	"CREATE OR REPLACE FUNCTION \"envdbi_immutable\"() RETURNS trigger LANGUAGE plpgsql AS "
	"$envdbi$ BEGIN RAISE EXCEPTION USING ERRCODE = '" PG_STATE_IMMUTABLE "', "
	"MESSAGE = TG_TABLE_NAME || ': immutable field changed'; END $envdbi$";

/*
 * Cross-host invalidation of resolve caches: triggers that NOTIFY the
 * control plane's channel (pgs_channel()) with the environment id of every
 * committed change a resolve result depends on — an environment's status
 * or slug, its database's address, any credential, any membership, and
 * rows appearing or going away.  NOTIFY is transactional: delivered at
 * COMMIT, never for a rolled-back change, once per (channel, id) per
 * transaction.  The last_accessed_at writes of resolves notify nothing
 * (the WHEN of the database trigger).  A host with a resolve cache
 * LISTENs (envdbi_store_watch_start()).
 */
static const char notify_ddl[] =
	"CREATE OR REPLACE FUNCTION \"envdbi_notify\"() RETURNS trigger LANGUAGE plpgsql AS "
	"$envdbi$ DECLARE env text; BEGIN "
	"IF TG_TABLE_NAME = 'sys_environment' THEN "
	"IF TG_OP = 'DELETE' THEN env := OLD.\"id\"; ELSE env := NEW.\"id\"; END IF; "
	"ELSIF TG_TABLE_NAME = 'sys_database_credential' THEN "
	"IF TG_OP = 'DELETE' THEN SELECT d.\"environment_id\" INTO env FROM "
	"\"sys_environment_database\" d WHERE d.\"id\" = OLD.\"environment_database_id\"; "
	"ELSE SELECT d.\"environment_id\" INTO env FROM \"sys_environment_database\" d "
	"WHERE d.\"id\" = NEW.\"environment_database_id\"; END IF; "
	"ELSE IF TG_OP = 'DELETE' THEN env := OLD.\"environment_id\"; "
	"ELSE env := NEW.\"environment_id\"; END IF; END IF; "
	"IF env IS NOT NULL THEN PERFORM pg_notify(left('envdb_' || TG_TABLE_SCHEMA, 63), env); "
	"END IF; RETURN NULL; END $envdbi$;\n"
	"DROP TRIGGER IF EXISTS \"sys_environment_notify\" ON \"sys_environment\";\n"
	"CREATE TRIGGER \"sys_environment_notify\" AFTER INSERT OR DELETE ON \"sys_environment\" "
	"FOR EACH ROW EXECUTE FUNCTION \"envdbi_notify\"();\n"
	"DROP TRIGGER IF EXISTS \"sys_environment_notify_update\" ON \"sys_environment\";\n"
	"CREATE TRIGGER \"sys_environment_notify_update\" AFTER UPDATE ON \"sys_environment\" "
	"FOR EACH ROW WHEN (OLD.\"status\" IS DISTINCT FROM NEW.\"status\" OR "
	"OLD.\"slug\" IS DISTINCT FROM NEW.\"slug\") EXECUTE FUNCTION \"envdbi_notify\"();\n"
	"DROP TRIGGER IF EXISTS \"sys_environment_database_notify\" ON "
	"\"sys_environment_database\";\n"
	"CREATE TRIGGER \"sys_environment_database_notify\" AFTER INSERT OR DELETE ON "
	"\"sys_environment_database\" FOR EACH ROW EXECUTE FUNCTION \"envdbi_notify\"();\n"
	"DROP TRIGGER IF EXISTS \"sys_environment_database_notify_update\" ON "
	"\"sys_environment_database\";\n"
	"CREATE TRIGGER \"sys_environment_database_notify_update\" AFTER UPDATE ON "
	"\"sys_environment_database\" FOR EACH ROW WHEN (OLD.\"database_url\" IS DISTINCT FROM "
	"NEW.\"database_url\" OR OLD.\"driver\" IS DISTINCT FROM NEW.\"driver\") "
	"EXECUTE FUNCTION \"envdbi_notify\"();\n"
	"DROP TRIGGER IF EXISTS \"sys_database_credential_notify\" ON "
	"\"sys_database_credential\";\n"
	"CREATE TRIGGER \"sys_database_credential_notify\" AFTER INSERT OR UPDATE OR DELETE ON "
	"\"sys_database_credential\" FOR EACH ROW EXECUTE FUNCTION \"envdbi_notify\"();\n"
	"DROP TRIGGER IF EXISTS \"sys_environment_member_notify\" ON \"sys_environment_member\";\n"
	"CREATE TRIGGER \"sys_environment_member_notify\" AFTER INSERT OR UPDATE OR DELETE ON "
	"\"sys_environment_member\" FOR EACH ROW EXECUTE FUNCTION \"envdbi_notify\"()";

/* Migration 1: every non-legacy object from the definitions, and the
 * notification triggers on them. */
static int migration_1(envdbi_store_backend *b)
{
	int rc = ddl(b, immutable_fn, "create the immutability function");
	if (rc == 0)
		rc = create_objects(b, false);
	return rc ? rc : ddl(b, notify_ddl, "create the notification triggers");
}

/* Migration 2: the columns defined since (aad_version); a control plane
 * made by migration 1 of this version has them all. */
static int migration_2(envdbi_store_backend *b)
{
	for (size_t i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		if (o->legacy)
			continue;
		for (size_t k = 0; k < o->n_fields; k++) {
			int64_t found = 0;
			char *sql = NULL;
			int rc = catalog_count(b, CAT_COLUMN, b->schema, o->name, o->fields[k].name,
					       &found);
			if (rc != 0)
				return rc;
			if (found)
				continue;
			if ((rc = envdbi_sql_add_column_ddl(&sql, &envdbi_sql_dialect_pg, o,
							    &o->fields[k])) != 0)
				return rc;
			rc = ddl(b, sql, o->name);
			free(sql);
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

/* Migration 3: the deployment identity (issue 16 §3), as the SQLite
 * store's: one row, a random id, never changed (a statement trigger
 * refuses UPDATE, DELETE and TRUNCATE with SQLSTATE ED002). */
static int migration_3(envdbi_store_backend *b)
{
	static const char sql[] =
		"CREATE TABLE IF NOT EXISTS \"sys_deployment\" ("
		"\"singleton\" integer PRIMARY KEY CHECK (\"singleton\" = 1), "
		"\"id\" text COLLATE \"C\" NOT NULL CHECK (\"id\" ~ "
		"'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'), "
		"\"created_at\" bigint NOT NULL);\n"
		"CREATE OR REPLACE FUNCTION \"envdbi_deployment_kept\"() RETURNS trigger "
		"LANGUAGE plpgsql AS $envdbi$ BEGIN RAISE EXCEPTION USING ERRCODE = '" PG_STATE_DEPLOYMENT
		"', MESSAGE = 'deployment id: immutable, cannot be changed or deleted'; END "
		"$envdbi$;\n"
		"DROP TRIGGER IF EXISTS \"sys_deployment_kept\" ON \"sys_deployment\";\n"
		"CREATE TRIGGER \"sys_deployment_kept\" BEFORE UPDATE OR DELETE OR TRUNCATE ON "
		"\"sys_deployment\" FOR EACH STATEMENT EXECUTE FUNCTION "
		"\"envdbi_deployment_kept\"()";
	pg_params p = {.n = 0};
	char id[37];
	int rc;

	if ((rc = ddl(b, sql, "create sys_deployment")) != 0)
		return rc;
	envdbi_uuid_new(id);
	params_add_text(&p, id, PG_OID_TEXT);
	params_add_int(&p, envdbi_now());
	return stmt(b,
		    "INSERT INTO \"sys_deployment\" (\"singleton\", \"id\", \"created_at\") "
		    "VALUES (1, $1, $2) ON CONFLICT (\"singleton\") DO NOTHING",
		    &p, "create the deployment id");
}

static int (*const migrations[ENVDBI_STORE_VERSION])(envdbi_store_backend *) = {
	migration_1, migration_2, migration_3};

typedef struct schema_state {
	bool exists; /* the schema */
	bool owned;  /* by the connecting role */
	char owner[128], me[128];
	bool has_version; /* the version table exists */
	int64_t app, version;
	int64_t tables; /* relations in the schema */
} schema_state;

static int read_state(envdbi_store_backend *b, schema_state *st)
{
	pg_params p = {.n = 0};
	PGresult *r = NULL;
	int rc;

	memset(st, 0, sizeof *st);
	params_add_text(&p, b->schema, PG_OID_TEXT);
	params_add_text(&p, PG_VERSION_TABLE, PG_OID_TEXT);
	/* the catalog only: a schema of another role may not be usable */
	if ((rc = query(b,
			"SELECT pg_catalog.pg_get_userbyid(n.nspowner), current_user, "
			"(SELECT count(*) FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid "
			"AND c.relkind IN ('r', 'p', 'v', 'm', 'f')), (SELECT count(*) FROM "
			"pg_catalog.pg_class c WHERE c.relnamespace = n.oid AND c.relname = $2) "
			"FROM pg_catalog.pg_namespace n WHERE n.nspname = $1",
			&p, &r, "read the schema")) != 0)
		return rc;
	if (PQntuples(r) > 0) {
		st->exists = true;
		snprintf(st->owner, sizeof st->owner, "%s", PQgetvalue(r, 0, 0));
		snprintf(st->me, sizeof st->me, "%s", PQgetvalue(r, 0, 1));
		st->owned = strcmp(st->owner, st->me) == 0;
		st->tables = cell_int(r, 0, 2);
		st->has_version = cell_int(r, 0, 3) != 0;
	}
	PQclear(r);
	r = NULL;
	if (st->exists && st->owned && st->has_version) {
		pg_params none = {.n = 0};
		if ((rc = query(b,
				"SELECT \"application_id\", \"version\" FROM \"" PG_VERSION_TABLE
				"\" WHERE \"singleton\" = 1",
				&none, &r, "read the schema version")) != 0)
			return rc;
		if (PQntuples(r) > 0) {
			st->app = cell_int(r, 0, 0);
			st->version = cell_int(r, 0, 1);
		}
		PQclear(r);
	}
	return 0;
}

/* The refusals of open(), before anything is written. */
static int check_state(envdbi_store_backend *b, const schema_state *st, unsigned flags)
{
	if (st->exists && !st->owned)
		return envdbi_error(
			ENVDB_ERR_CONFIG, NULL,
			"control plane %s: refused: schema %s is owned by %s, not by the "
			"connecting role %s",
			b->desc, b->schema, st->owner, st->me);
	if (st->has_version && st->app != PG_APPLICATION_ID)
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "control plane %s: not an envdb control plane (application id "
				    "%#" PRIx64 ")",
				    b->desc, (uint64_t)st->app);
	if (st->version > ENVDBI_STORE_VERSION)
		return envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
				    "control plane %s: schema version %" PRId64
				    " is newer than this libenvdb supports (%d): upgrade envdb",
				    b->desc, st->version, ENVDBI_STORE_VERSION);
	if (!st->has_version && st->tables > 0)
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "control plane %s: not an envdb control plane (schema %s holds "
				    "other tables)",
				    b->desc, b->schema);
	if (st->version == 0 && !(flags & ENVDB_OPEN_CREATE))
		return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
				    "control plane %s: not initialised (run envdb init)", b->desc);
	return 0;
}

/* Check, and create or migrate under the write lock (re-reading the state
 * after taking it: another process may have done it meanwhile).  DDL is
 * transactional in PostgreSQL: an interrupted migration leaves nothing. */
static int migrate(envdbi_store_backend *b, unsigned flags, int *version)
{
	schema_state st;
	pg_params p = {.n = 0};
	char sql[PG_SCHEMA_MAX * 2 + 64];
	int rc, from;

	if ((rc = read_state(b, &st)) != 0 || (rc = check_state(b, &st, flags)) != 0)
		return rc;
	if (st.version == ENVDBI_STORE_VERSION) {
		*version = (int)st.version;
		return 0;
	}
	if ((rc = pg_begin(b, 0)) != 0)
		return rc;
	if (!st.exists) {
		snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s", b->qschema);
		if ((rc = ddl(b, sql, "create the schema")) != 0)
			goto out;
	}
	if ((rc = read_state(b, &st)) != 0 || (rc = check_state(b, &st, flags)) != 0)
		goto out;
	from = (int)st.version;
	if ((rc = ddl(b,
		      "CREATE TABLE IF NOT EXISTS \"" PG_VERSION_TABLE "\" ("
		      "\"singleton\" integer PRIMARY KEY CHECK (\"singleton\" = 1), "
		      "\"application_id\" bigint NOT NULL, \"version\" integer NOT NULL)",
		      "create the version table")) != 0)
		goto out;
	for (int v = from; v < ENVDBI_STORE_VERSION; v++) {
		if ((rc = migrations[v](b)) != 0) {
			envdbi_error_prefix("migration %d: ", v + 1);
			goto out;
		}
	}
	params_add_int(&p, PG_APPLICATION_ID);
	params_add_int(&p, ENVDBI_STORE_VERSION);
	if ((rc = stmt(b,
		       "INSERT INTO \"" PG_VERSION_TABLE "\" (\"singleton\", \"application_id\", "
		       "\"version\") VALUES (1, $1, $2) ON CONFLICT (\"singleton\") DO UPDATE SET "
		       "\"application_id\" = EXCLUDED.\"application_id\", \"version\" = "
		       "EXCLUDED.\"version\"",
		       &p, "set the schema version")) != 0)
		goto out;
	rc = pg_commit(b, 1);
	if (rc == 0) {
		*version = ENVDBI_STORE_VERSION;
		if (from > 0)
			envdbi_log(ENVDB_LOG_INFO,
				   "control plane %s: migrated from version %d to %d", b->desc,
				   from, ENVDBI_STORE_VERSION);
	}
	return rc;
out:
	pg_rollback(b, 1);
	return rc;
}

static int ensure_legacy(envdbi_store_backend *b)
{
	int64_t n = 0;
	int rc = catalog_count(b,
			       "SELECT count(*) FROM pg_catalog.pg_class c JOIN "
			       "pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE "
			       "n.nspname = $1 AND c.relname IN ('sys_tenant_database', "
			       "'sys_package_installation')",
			       b->schema, NULL, NULL, &n);
	if (rc != 0 || n == 2)
		return rc;
	if ((rc = pg_begin(b, 0)) != 0)
		return rc;
	if ((rc = create_objects(b, true)) != 0) {
		pg_rollback(b, 1);
		return rc;
	}
	return pg_commit(b, 1);
}

static int load_deployment_id(envdbi_store_backend *b, envdbi_store_info *info)
{
	pg_params none = {.n = 0};
	PGresult *r = NULL;
	int rc = query(b,
		       "SELECT \"id\", \"created_at\" FROM \"sys_deployment\" WHERE "
		       "\"singleton\" = 1",
		       &none, &r, "read the deployment id");
	if (rc != 0)
		return rc;
	if (PQntuples(r) == 0 || !envdbi_uuid_valid(PQgetvalue(r, 0, 0)))
		rc = envdbi_error(ENVDB_ERR_INVALID, NULL,
				  "control plane %s: no valid deployment id (table sys_deployment "
				  "%s)",
				  b->desc, PQntuples(r) == 0 ? "is empty" : "holds a malformed id");
	else {
		snprintf(info->deployment_id, sizeof info->deployment_id, "%s",
			 PQgetvalue(r, 0, 0));
		info->deployment_created_at = cell_int(r, 0, 1);
	}
	PQclear(r);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Open / close                                                              */
/* ------------------------------------------------------------------------ */

static void pg_close(envdbi_store_backend *b)
{
	if (b == NULL)
		return;
	if (b->conn != NULL) {
		if (!conn_lost(b) && (b->depth > 0 || b->snapshot)) {
			PGresult *r = PQexec(b->conn, "ROLLBACK");
			PQclear(r);
		}
		PQfinish(b->conn);
	}
	prepared_clear(b);
	envdbi_secret_free(b->conninfo);
	if (b->qschema != NULL)
		PQfreemem(b->qschema);
	free(b->schema);
	free(b->desc);
	free(b);
}

/* Open a backend state of `schema` over `conninfo` (connected, session set;
 * no schema check). */
static int open_conn(envdbi_store_backend **out, const char *conninfo, const char *schema,
		     int64_t busy_timeout_ms, bool legacy)
{
	envdbi_store_backend *b;
	PQconninfoOption *opts;
	char *err = NULL;
	int rc;

	*out = NULL;
	if (!schema_name_ok(schema))
		return envdbi_error(
			ENVDB_ERR_CONFIG, NULL,
			"control plane postgresql: schema name \"%s\" is not a lowercase "
			"identifier of at most %d bytes ([a-z_][a-z0-9_]*, not pg_...)",
			schema, PG_SCHEMA_MAX);
	if (conninfo == NULL || conninfo[0] == '\0')
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "control plane postgresql (schema %s): no conninfo "
				    "(control_plane.conninfo_file or conninfo_env)",
				    schema);
	/* libpq's parse message may quote the text around an error, which can
	 * be the password: say only that it is malformed. */
	if ((opts = PQconninfoParse(conninfo, &err)) == NULL) {
		PQfreemem(err);
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "control plane postgresql (schema %s): the conninfo is not a "
				    "valid libpq connection string (key=value ... or "
				    "postgresql://...); its text is not shown (it may hold a "
				    "password)",
				    schema);
	}
	PQconninfoFree(opts);
	if (envdbi_sodium_init() != 0)
		return ENVDB_ERR_GENERIC;
	if ((b = calloc(1, sizeof *b)) == NULL || (b->schema = strdup(schema)) == NULL ||
	    (b->conninfo = envdbi_secret_new(conninfo, strlen(conninfo))) == NULL) {
		if (b != NULL)
			free(b->schema);
		free(b);
		return nomem();
	}
	b->busy_timeout_ms = busy_timeout_ms > 0 ? busy_timeout_ms : 5000;
	b->legacy = legacy;
	lock_key_of(b->lock_key, schema);
	if ((rc = pgs_connect(b)) != 0) {
		pg_close(b);
		return rc;
	}
	*out = b;
	return 0;
}

/* The snapshot of ENVDB_OPEN_SNAPSHOT and snapshot(): every statement of
 * this connection runs inside one REPEATABLE READ transaction that is
 * never committed (rolled back by close), so a dry run writes nothing and
 * reads one consistent state.  Its writes do take row locks: a dry run
 * that changes rows delays a real writer of those rows until it closes. */
static int start_snapshot(envdbi_store_backend *b)
{
	envdbi_store_fail f = {0};
	if (simple(b, "BEGIN ISOLATION LEVEL REPEATABLE READ", &f) != 0)
		return report(b, &f, "begin a snapshot");
	b->snapshot = true;
	return 0;
}

static int pg_open(envdbi_store_backend **out, const envdbi_store_config *cfg, unsigned flags,
		   envdbi_store_info *info)
{
	envdbi_store_backend *b = NULL;
	int rc;

	*out = NULL;
	memset(info, 0, sizeof *info);
	rc = open_conn(&b, cfg->conninfo, cfg->schema ? cfg->schema : "envdb", cfg->busy_timeout_ms,
		       cfg->legacy);
	if (rc != 0)
		return rc;
	if (flags & ENVDB_OPEN_SNAPSHOT) {
		flags &= ~(unsigned)ENVDB_OPEN_CREATE;
		if ((rc = start_snapshot(b)) != 0)
			goto fail;
	}
	if ((rc = migrate(b, flags, &info->version)) != 0 ||
	    (rc = load_deployment_id(b, info)) != 0)
		goto fail;
	if (b->legacy && (rc = ensure_legacy(b)) != 0)
		goto fail;
	info->snapshot = b->snapshot;
	*out = b;
	return 0;
fail:
	pg_close(b);
	return rc;
}

static int pg_snapshot(envdbi_store_backend **out, envdbi_store_backend *src,
		       envdbi_store_info *info)
{
	envdbi_store_backend *b = NULL;
	int rc;

	*out = NULL;
	memset(info, 0, sizeof *info);
	if ((rc = open_conn(&b, src->conninfo->data, src->schema, src->busy_timeout_ms,
			    src->legacy)) != 0)
		return rc;
	if ((rc = start_snapshot(b)) != 0 || (rc = load_deployment_id(b, info)) != 0) {
		pg_close(b);
		return rc;
	}
	info->version = ENVDBI_STORE_VERSION;
	info->snapshot = true;
	*out = b;
	return 0;
}

static const char *pg_describe(const envdbi_store_backend *b)
{
	return b->desc;
}

const envdbi_store_backend_ops envdbi_store_backend_pg = {
	.name = "postgresql",
	.open = pg_open,
	.close = pg_close,
	.describe = pg_describe,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.select = pg_select,
	.insert = pg_insert,
	.update = pg_update,
	.exec = pg_exec,
	.ints = pg_ints,
	.strings = pg_strings,
	.find_conflict = pg_find_conflict,
	.resolve_get = pg_resolve_get,
	.find_duplicates = pg_find_duplicates,
	.find_dangling = pg_find_dangling,
	.verify_schema = pg_verify_schema,
	.snapshot = pg_snapshot,
	.bulk = NULL,
	.backup = NULL,
	.restore = NULL,
};

/* ------------------------------------------------------------------------ */
/* Watching other processes' changes (LISTEN)                                */
/* ------------------------------------------------------------------------ */

struct envdbi_store_watch {
	PGconn *conn;
	envdbi_secret *conninfo;
	char *desc;
	char channel[PG_SCHEMA_MAX + 8]; /* left('envdb_' || schema, 63), as the triggers */
	int64_t busy_timeout_ms;
	envdbi_store_change_cb cb;
	void *cb_ctx;
	int wake[2]; /* written by stop */
	pthread_t thread;
	bool started;
	bool warned; /* the fallback to the TTL was logged */
};

/* Connect and LISTEN; 0 or -1 with the cause in `why`. */
static int watch_connect(envdbi_store_watch *w, char *why, size_t cap)
{
	char ct[24], sql[PG_SCHEMA_MAX * 2 + 32];
	int64_t secs = (w->busy_timeout_ms + 999) / 1000;
	const char *const keys[] = {
		"application_name",    "connect_timeout",  "keepalives", "keepalives_idle",
		"keepalives_interval", "keepalives_count", "dbname",     NULL};
	const char *vals[8] = {"envdb listen", ct, "1", "10", "5", "3", w->conninfo->data, NULL};
	char *q;
	PGresult *r;

	snprintf(ct, sizeof ct, "%" PRId64, secs < 2 ? 2 : secs);
	if (w->conn != NULL)
		PQfinish(w->conn);
	w->conn = PQconnectdbParams(keys, vals, 1);
	if (w->conn == NULL || PQstatus(w->conn) != CONNECTION_OK) {
		const char *m = w->conn ? PQerrorMessage(w->conn) : "out of memory";
		snprintf(why, cap, "%.*s", (int)strcspn(m, "\n"), m);
		return -1;
	}
	PQsetNoticeProcessor(w->conn, quiet_notice, NULL);
	if ((q = PQescapeIdentifier(w->conn, w->channel, strlen(w->channel))) == NULL) {
		snprintf(why, cap, "out of memory");
		return -1;
	}
	snprintf(sql, sizeof sql, "LISTEN %s", q);
	PQfreemem(q);
	r = PQexec(w->conn, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		snprintf(why, cap, "LISTEN: %s", m ? m : "failed");
		PQclear(r);
		return -1;
	}
	PQclear(r);
	return 0;
}

static void watch_fallback(envdbi_store_watch *w, const char *why)
{
	if (w->warned)
		return;
	w->warned = true;
	envdbi_log(ENVDB_LOG_WARNING,
		   "control plane %s: no cross-host resolve-cache invalidation (%s): changes made "
		   "by other hosts are seen when a cached result's TTL ends; retrying",
		   w->desc, why);
}

/* Wait up to ms for the stop pipe; true when stopping. */
static bool watch_sleep(envdbi_store_watch *w, int ms)
{
	struct pollfd pf = {.fd = w->wake[0], .events = POLLIN};
	return poll(&pf, 1, ms) > 0;
}

static void *watch_main(void *arg)
{
	envdbi_store_watch *w = arg;
	char why[256];
	int backoff = 100;

	for (;;) {
		if (w->conn == NULL || PQstatus(w->conn) != CONNECTION_OK) {
			if (watch_connect(w, why, sizeof why) != 0) {
				watch_fallback(w, why);
				if (watch_sleep(w, backoff))
					break;
				backoff = backoff < 1000 ? backoff * 2 : 2000;
				continue;
			}
			backoff = 100;
			w->cb(w->cb_ctx, NULL); /* what was missed meanwhile */
			if (w->warned)
				envdbi_log(
					ENVDB_LOG_WARNING,
					"control plane %s: cross-host resolve-cache invalidation "
					"restored",
					w->desc);
			w->warned = false;
		}
		struct pollfd pf[2] = {{.fd = PQsocket(w->conn), .events = POLLIN},
				       {.fd = w->wake[0], .events = POLLIN}};
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents)
			break;
		if (!PQconsumeInput(w->conn)) {
			snprintf(why, sizeof why, "the listening connection broke");
			PQfinish(w->conn);
			w->conn = NULL;
			w->cb(w->cb_ctx, NULL);
			watch_fallback(w, why);
			continue;
		}
		PGnotify *n;
		while ((n = PQnotifies(w->conn)) != NULL) {
			if (n->extra != NULL && n->extra[0] != '\0')
				w->cb(w->cb_ctx, n->extra);
			PQfreemem(n);
		}
	}
	return NULL;
}

static void watch_free(envdbi_store_watch *w)
{
	if (w->conn != NULL)
		PQfinish(w->conn);
	envdbi_secret_free(w->conninfo);
	free(w->desc);
	if (w->wake[0] >= 0)
		close(w->wake[0]);
	if (w->wake[1] >= 0)
		close(w->wake[1]);
	free(w);
}

int envdbi_store_watch_start(envdbi_store_watch **out, envdbi_store *s, envdbi_store_change_cb cb,
			     void *cb_ctx)
{
	envdbi_store_backend *b;
	envdbi_store_watch *w;
	char why[256];

	*out = NULL;
	if (s == NULL || cb == NULL || envdbi_store_ops(s) != &envdbi_store_backend_pg)
		return ENVDB_ERR_NOT_SUPPORTED;
	envdbi_store_lock(s);
	b = envdbi_store_state(s);
	if ((w = calloc(1, sizeof *w)) == NULL ||
	    (w->conninfo = envdbi_secret_new(b->conninfo->data, b->conninfo->len)) == NULL ||
	    (w->desc = strdup(b->desc)) == NULL) {
		envdbi_store_unlock(s);
		if (w != NULL) {
			envdbi_secret_free(w->conninfo);
			free(w);
		}
		return nomem();
	}
	snprintf(w->channel, sizeof w->channel, "envdb_%.*s", PG_SCHEMA_MAX - 6, b->schema);
	w->busy_timeout_ms = b->busy_timeout_ms;
	envdbi_store_unlock(s);
	w->cb = cb;
	w->cb_ctx = cb_ctx;
	w->wake[0] = w->wake[1] = -1;
	if (pipe2(w->wake, O_CLOEXEC) != 0) {
		watch_free(w);
		return envdbi_error(ENVDB_ERR_IO, NULL, "control plane: watch: pipe: %s",
				    strerror(errno));
	}
	/* Listening before this returns: a result cached from now on is
	 * invalidated by any later commit.  Retried by the thread if not. */
	if (watch_connect(w, why, sizeof why) != 0)
		watch_fallback(w, why);
	if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
		watch_fallback(w, "cannot start its thread");
		watch_free(w);
		return ENVDB_ERR_NOT_SUPPORTED;
	}
	w->started = true;
	*out = w;
	return 0;
}

void envdbi_store_watch_stop(envdbi_store_watch *w)
{
	if (w == NULL)
		return;
	if (w->started) {
		ssize_t rc = write(w->wake[1], "x", 1);
		(void)rc;
		pthread_join(w->thread, NULL);
	}
	watch_free(w);
}

/* ------------------------------------------------------------------------ */
/* envdb store copy: the deployment id of the source (store_copy.h)          */
/* ------------------------------------------------------------------------ */

int envdbi_store_pg_adopt_deployment(envdbi_store *s, const char *id, int64_t created_at)
{
	envdbi_store_backend *b;
	envdbi_store_fail f = {0};
	pg_params p = {.n = 0};
	PGresult *r = NULL;
	int rc = 0;

	if (envdbi_store_ops(s) != &envdbi_store_backend_pg)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "control plane: adopt a deployment id: not a PostgreSQL store");
	envdbi_store_lock(s);
	b = envdbi_store_state(s);
	if (!in_tx(b)) {
		envdbi_store_unlock(s);
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "control plane %s: adopt a deployment id: no transaction",
				    b->desc);
	}
	params_add_text(&p, id, PG_OID_TEXT);
	params_add_int(&p, created_at);
	/* the trigger that keeps the id, off for this one statement of this
	 * transaction (ALTER TABLE is transactional: nobody else sees it off) */
	if (run_write(b, "ALTER TABLE \"sys_deployment\" DISABLE TRIGGER \"sys_deployment_kept\"",
		      &(pg_params){.n = 0}, &r, &f) != 0 ||
	    (PQclear(r), r = NULL,
	     run_write(b,
		       "UPDATE \"sys_deployment\" SET \"id\" = $1, \"created_at\" = $2 WHERE "
		       "\"singleton\" = 1",
		       &p, &r, &f)) != 0 ||
	    (PQclear(r), r = NULL,
	     run_write(b, "ALTER TABLE \"sys_deployment\" ENABLE TRIGGER \"sys_deployment_kept\"",
		       &(pg_params){.n = 0}, &r, &f)) != 0)
		rc = report(b, &f, "set the deployment id");
	PQclear(r);
	envdbi_store_unlock(s);
	return rc;
}
