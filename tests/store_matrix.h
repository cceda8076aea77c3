/*
 * tests/store_matrix.h — one test suite, run against both control-plane
 * stores: the SQLite file, then a PostgreSQL schema on a cluster the test
 * starts itself (tests/pg_harness.h).  Not a copy of a suite: the same
 * test functions run twice, and the few that are about one store only ask
 * sm_pg() and skip the other.
 *
 * ENVDB_TEST_STORE selects the passes: "sqlite", "postgresql", or "both"
 * (the default).  The PostgreSQL pass is skipped with a message when no
 * server binaries are installed (or the build has no PostgreSQL store).
 *
 * On PostgreSQL every test gets a control plane of its own: a new schema
 * in the database envdb_cp, owned by the role envdb_cp (not a superuser),
 * whose conninfo is in a file readable by its owner only (conninfo.txt in
 * the test's directory), as a deployment would hold it.
 */
#ifndef ENVDB_STORE_MATRIX_H
#define ENVDB_STORE_MATRIX_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/** Run the suite made by `make` once per selected store; returns the
 * number of failed tests of every pass (a skipped pass counts none). */
int sm_run(Suite *(*make)(void));

/** True in the PostgreSQL pass. */
bool sm_pg(void);
/** "sqlite" or "postgresql". */
const char *sm_store_name(void);

/** Make a fresh control plane for the current test, its files (the
 * SQLite file, the conninfo file) under `dir` (which exists).  Call from
 * the test's setup. */
void sm_fresh(const char *dir);
/** The current control plane's name: the SQLite file, or the schema. */
const char *sm_name(void);
/** The conninfo file of the PostgreSQL pass (NULL in the SQLite pass). */
const char *sm_conninfo_file(void);

/** Write the manifest's control_plane entry for the current control plane
 * (a line for SQLite, a mapping for PostgreSQL) at top level. */
void sm_manifest_control_plane(FILE *f);

/** Run `sql` (statements) directly on control plane `name` (sm_name() of
 * when it was made: a file, or a schema), as another process would:
 * sqlite3 on the file with foreign keys on (as every envdb process has
 * them), or a libpq session of the schema's owner with the schema as its
 * search path.  0, or -1 with the error in err (may be NULL). */
int sm_exec(const char *name, const char *sql, char *err, size_t cap);

/** PostgreSQL pass: run `sql` (statements) as the owner of the current
 * control plane, with its schema as the search path.  Returns 0, or -1
 * with the server's message in err. */
int sm_pg_exec(const char *sql, char *err, size_t cap);
/** The same as the cluster's superuser. */
int sm_pg_exec_super(const char *sql, char *err, size_t cap);
/** One value of a query as the owner ("" for none); the row count or -1. */
int sm_pg_query1(const char *sql, char *out, size_t cap);
/** The conninfo of the owner role (for tests that connect themselves). */
const char *sm_pg_conninfo(void);
/** The cluster's TCP port. */
int sm_pg_port(void);
/** Restart the cluster's server (every session ends); asserts success. */
void sm_pg_restart(void);
/** The directory of the server's binaries (pg_dump, pg_restore, psql). */
const char *sm_pg_bindir(void);
/** The owner role's conninfo to database `dbname` into out. */
void sm_pg_conninfo_db(char *out, size_t cap, const char *dbname);

#endif /* ENVDB_STORE_MATRIX_H */
