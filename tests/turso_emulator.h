/*
 * tests/turso_emulator.h — an emulator of the Turso Platform API for the
 * tests of plugins/turso, written from the documented contract (Turso's
 * docs and OpenAPI, summarised in plugins/turso/README.md): exact JSON shapes, {"error": …} bodies, the
 * 400/409/422 duplicate-name variants, bearer-token checks, group-wide
 * token rotation, pagination — plus a data-plane gateway in front of a real
 * libSQL HTTP server (`tursodb --sync-server`) that adds what that server
 * lacks: per-database JWT checks, read-only tokens, and the 404 a new
 * database answers on /v2/pipeline for a while after create.
 *
 * It is a small single-threaded HTTP/1.1 server (poll loop, one answer per
 * connection, Connection: close) on 127.0.0.1 with random ports, run in a
 * thread of the test process.  Failure modes are scriptable per test with
 * turso_emu_add_fault(): the next N requests of an operation answer with a
 * given status, body, Retry-After, after a delay, or drop the connection.
 *
 * Thread safety: every turso_emu_* function may be called from the test
 * thread while the server thread runs (one mutex).
 */
#ifndef ENVDB_TESTS_TURSO_EMULATOR_H
#define ENVDB_TESTS_TURSO_EMULATOR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct turso_emu turso_emu;

enum turso_emu_dataplane {
	/** Hostname points at the emulator's gateway, which checks tokens and
	 * readiness and forwards to the libSQL server. */
	TURSO_EMU_GATEWAY = 0,
	/** Hostname points straight at the libSQL server. */
	TURSO_EMU_DIRECT = 1
};

typedef struct turso_emu_options {
	const char *org;          /* organization slug, default "acme" */
	const char *api_token;    /* the only Platform API token accepted; required */
	const char *groups;       /* existing groups, comma-separated; default "default" */
	int libsql_port;          /* port of tursodb --sync-server on 127.0.0.1; 0: none */
	int dataplane;            /* turso_emu_dataplane */
	int64_t ready_delay_ms;   /* a new database answers 404 on /v2/pipeline this long */
	int duplicate_status;     /* 409 (documented, default), 400 (live), 422 */
	int page_size;            /* list page size; 0: no pagination */
	bool gateway_baton;       /* gateway answers with a baton (stream kept open) */
	/** The API token is scoped to this group (the Platform API's
	 * group tokens): any database call outside it answers 403.  NULL: an
	 * organization-wide token. */
	const char *token_group;
	/** GET /v1/auth/validate's "exp" (unix seconds); 0: -1 (never).  A
	 * time in the past makes every call answer 401 "token expired". */
	int64_t api_token_exp;
} turso_emu_options;

/** Start the emulator thread.  Returns 0, or -1 with errno-ish detail on
 * stderr. */
int turso_emu_start(turso_emu **out, const turso_emu_options *opt);
/** Stop the thread and free everything.  NULL is allowed. */
void turso_emu_stop(turso_emu *e);

/** "http://127.0.0.1:PORT" of the Platform API.  Owned by the emulator. */
const char *turso_emu_api_url(const turso_emu *e);
int turso_emu_gateway_port(const turso_emu *e);

/** Change options at run time. */
void turso_emu_set_ready_delay(turso_emu *e, int64_t ms);
void turso_emu_set_duplicate_status(turso_emu *e, int status);

/** A scripted answer.  Operations: create, get, list, delete, mint, rotate,
 * validate, pipeline, any. */
typedef struct turso_emu_fault {
	const char *op;
	int count;           /* how many matching requests it applies to */
	int status;          /* answer status; 0: the normal answer (with delay_ms) */
	int retry_after;     /* Retry-After seconds; < 0: no header */
	const char *body;    /* answer body; NULL: {"error":"<reason>"} */
	int64_t delay_ms;    /* answer this much later */
	bool perform;        /* carry the operation out, then answer `status` */
	bool drop;           /* close the connection without answering */
} turso_emu_fault;
void turso_emu_add_fault(turso_emu *e, const turso_emu_fault *f);
void turso_emu_clear_faults(turso_emu *e);

/** Requests received for an operation (faulted ones included). */
int turso_emu_count(turso_emu *e, const char *op);
/** Mint requests that carried a non-empty body (the plugin must send none). */
int turso_emu_mint_bodies(turso_emu *e);
/** Does a database of that name exist (in any group)? */
bool turso_emu_has_db(turso_emu *e, const char *name);
int turso_emu_db_count(turso_emu *e);
/** Create a database directly (not counted), e.g. a pre-existing one. */
void turso_emu_put_db(turso_emu *e, const char *name, const char *group);
/** The group of a database, copied into out ("" when absent). */
void turso_emu_db_group(turso_emu *e, const char *name, char *out, size_t cap);
/** Every request line received ("METHOD /path?query"), one per line;
 * malloc'd, free() it. */
char *turso_emu_request_log(turso_emu *e);

/* ---- the libSQL HTTP server (tursodb --sync-server) ---------------------- */

/** Path of the tursodb binary: $ENVDB_TURSODB, else
 * $ENVDB_TEST_BUILDDIR/.npm-turso/node_modules/@tursodatabase/cli-linux-x64-gnu/tursodb
 * when executable; NULL when none. Static or getenv storage. */
const char *turso_libsql_binary(void);
/** Start `tursodb DIR/libsql.db --sync-server 127.0.0.1:PORT` on a free
 * port and wait until it accepts connections.  Returns 0 with *pid and
 * *port set, or -1. */
int turso_libsql_start(const char *binary, const char *dir, pid_t *pid, int *port);
void turso_libsql_stop(pid_t pid);

#endif /* ENVDB_TESTS_TURSO_EMULATOR_H */
