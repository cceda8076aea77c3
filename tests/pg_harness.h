/*
 * tests/pg_harness.h — a throwaway PostgreSQL cluster for tests and
 * benchmarks: initdb into a fresh temporary directory, a server listening
 * on 127.0.0.1 only (and a unix socket in that directory) on a free port,
 * stopped and removed at the end.
 *
 * The server binaries are taken from $ENVDB_PG_BINDIR, else the newest
 * /usr/lib/postgresql/<version>/bin.  When running as root, initdb and the
 * server run as the unprivileged user "nobody" (PostgreSQL refuses root).
 *
 * Cleanup does not depend on the test ending well: a watchdog process
 * forked at start waits on a pipe whose only writer is the test process;
 * when that process exits for any reason (a failed assertion, a crash,
 * SIGKILL), the pipe closes and the watchdog stops the server and removes
 * the directory.  pg_harness_stop() simply closes the pipe and waits.
 *
 * Not thread-safe; one cluster per process is the intended use.
 */
#ifndef ENVDB_PG_HARNESS_H
#define ENVDB_PG_HARNESS_H

#include <stddef.h>

#include <libpq-fe.h>

typedef struct pg_harness pg_harness;

/** pg_harness_start() result when no PostgreSQL server binaries exist. */
#define PG_HARNESS_SKIP 77

/**
 * Start a cluster.  Returns 0 with *out set; PG_HARNESS_SKIP (a message in
 * `err`) when no server binaries are installed; -1 (a message in `err`,
 * with the end of the server log when it is the server that failed) on
 * any other failure, having cleaned up.
 */
int pg_harness_start(pg_harness **out, char *err, size_t err_cap);

/** Restart the server (pg_ctl restart -m fast: every session is ended),
 * on the same port and data.  0, or -1 with a message in `err`. */
int pg_harness_restart(pg_harness *h, char *err, size_t err_cap);

/** Stop the server, remove the directory, free `h`.  NULL allowed. */
void pg_harness_stop(pg_harness *h);

/** TCP port on 127.0.0.1. */
int pg_harness_port(const pg_harness *h);
/** The cluster's temporary directory (also the unix socket directory). */
const char *pg_harness_dir(const pg_harness *h);
/** Directory of the server binaries (psql is there too). */
const char *pg_harness_bindir(const pg_harness *h);
/** The server's major version times 10000 (150000 for 15.x). */
int pg_harness_version(const pg_harness *h);
/** Name and password of the bootstrap superuser. */
const char *pg_harness_super_user(const pg_harness *h);
const char *pg_harness_super_password(const pg_harness *h);

/**
 * A key/value connection string to database `dbname` as `user` with
 * `password` (NULL: none) over TCP; written into `out`.  Values are
 * quoted, so any name works.  Returns `out`.
 */
char *pg_harness_conninfo(char *out, size_t cap, const pg_harness *h, const char *user,
			  const char *password, const char *dbname);

/** Connect as the superuser to `dbname` (NULL: postgres).  NULL on failure
 * (the message printed to stderr). */
PGconn *pg_harness_connect_super(const pg_harness *h, const char *dbname);

/**
 * Run `sql` (one or more statements) as the superuser in `dbname` (NULL:
 * postgres).  Returns 0, or -1 with the server's message in `err` (may be
 * NULL).
 */
int pg_harness_exec(const pg_harness *h, const char *dbname, const char *sql, char *err,
		    size_t err_cap);

/**
 * Run a query returning one value as the superuser; the value (or "" for
 * NULL, or when there is no row) goes into `out`.  Returns the number of
 * rows, or -1 on failure.
 */
int pg_harness_query1(const pg_harness *h, const char *dbname, const char *sql, char *out,
		      size_t cap);

#endif /* ENVDB_PG_HARNESS_H */
