/*
 * tests/store_matrix.c — run one suite against both control-plane stores
 * (tests/store_matrix.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store_matrix.h"

#ifdef HAVE_STORE_PG
#include <libpq-fe.h>

#include "pg_harness.h"
#endif

#define SM_ROLE "envdb_cp"
#define SM_DB "envdb_cp"

static bool pass_pg;
static char cp_name[512];      /* the file or the schema */
static char cp_conninfo[1024]; /* the owner's conninfo (PostgreSQL) */
static char cp_conninfo_file[512];
static unsigned fresh_seq;

#ifdef HAVE_STORE_PG
static pg_harness *cluster;
static char role_password[40];
#endif

bool sm_pg(void)
{
	return pass_pg;
}

const char *sm_store_name(void)
{
	return pass_pg ? "postgresql" : "sqlite";
}

const char *sm_name(void)
{
	return cp_name;
}

const char *sm_conninfo_file(void)
{
	return pass_pg ? cp_conninfo_file : NULL;
}

const char *sm_pg_conninfo(void)
{
	return cp_conninfo;
}

void sm_fresh(const char *dir)
{
	if (!pass_pg) {
		snprintf(cp_name, sizeof cp_name, "%s/control.db", dir);
		return;
	}
	/* unique across the forked tests of this run and across runs */
	snprintf(cp_name, sizeof cp_name, "t%ld_%u_%u", (long)getpid(), ++fresh_seq,
		 (unsigned)(random() % 100000));
	snprintf(cp_conninfo_file, sizeof cp_conninfo_file, "%s/conninfo.txt", dir);
	int fd = open(cp_conninfo_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_msg(fd >= 0, "cannot write %s: %s", cp_conninfo_file, strerror(errno));
	ck_assert_int_eq(write(fd, cp_conninfo, strlen(cp_conninfo)), (ssize_t)strlen(cp_conninfo));
	ck_assert_int_eq(write(fd, "\n", 1), 1);
	ck_assert_int_eq(close(fd), 0);
}

void sm_manifest_control_plane(FILE *f)
{
	if (!pass_pg)
		fprintf(f, "control_plane: %s\n", cp_name);
	else
		fprintf(f,
			"control_plane:\n"
			"  driver: postgresql\n"
			"  conninfo_file: %s\n"
			"  schema: %s\n",
			cp_conninfo_file, cp_name);
}

#ifdef HAVE_STORE_PG
static void quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

static int exec_on(const char *conninfo, const char *search_path, const char *sql, char *err,
		   size_t cap)
{
	PGconn *c = PQconnectdb(conninfo);
	PGresult *r;
	int rc = -1;

	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(err, cap, "%s", PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	PQsetNoticeProcessor(c, quiet, NULL);
	if (search_path != NULL) {
		const char *v[1] = {search_path};
		r = PQexecParams(c, "SELECT set_config('search_path', $1, false)", 1, NULL, v, NULL,
				 NULL, 0);
		PQclear(r);
	}
	r = PQexec(c, sql);
	if (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK)
		rc = 0;
	else if (err != NULL)
		snprintf(err, cap, "%s", PQresultErrorMessage(r));
	PQclear(r);
	PQfinish(c);
	return rc;
}

int sm_pg_exec(const char *sql, char *err, size_t cap)
{
	char e[512];
	return exec_on(cp_conninfo, cp_name, sql, err ? err : e, err ? cap : sizeof e);
}

int sm_pg_exec_super(const char *sql, char *err, size_t cap)
{
	char e[512];
	return pg_harness_exec(cluster, SM_DB, sql, err ? err : e, err ? cap : sizeof e);
}

int sm_pg_query1(const char *sql, char *out, size_t cap)
{
	PGconn *c = PQconnectdb(cp_conninfo);
	PGresult *r;
	int rows = -1;
	const char *v[1] = {cp_name};

	out[0] = '\0';
	if (PQstatus(c) != CONNECTION_OK) {
		PQfinish(c);
		return -1;
	}
	r = PQexecParams(c, "SELECT set_config('search_path', $1, false)", 1, NULL, v, NULL, NULL,
			 0);
	PQclear(r);
	r = PQexec(c, sql);
	if (PQresultStatus(r) == PGRES_TUPLES_OK) {
		rows = PQntuples(r);
		if (rows > 0 && PQnfields(r) > 0)
			snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
	}
	PQclear(r);
	PQfinish(c);
	return rows;
}

int sm_pg_port(void)
{
	return cluster ? pg_harness_port(cluster) : 0;
}

const char *sm_pg_bindir(void)
{
	return cluster ? pg_harness_bindir(cluster) : "";
}

void sm_pg_restart(void)
{
	char err[2048];
	ck_assert_msg(pg_harness_restart(cluster, err, sizeof err) == 0, "%s", err);
}

void sm_pg_conninfo_db(char *out, size_t cap, const char *dbname)
{
	pg_harness_conninfo(out, cap, cluster, SM_ROLE, role_password, dbname);
}

/* The cluster, the role and the database of the PostgreSQL pass. */
static int pg_start(void)
{
	char err[2048], sql[512];
	int rc = pg_harness_start(&cluster, err, sizeof err);

	if (rc == PG_HARNESS_SKIP) {
		fprintf(stderr, "store_matrix: postgresql pass skipped: %s\n", err);
		return 1;
	}
	if (rc != 0) {
		fprintf(stderr, "store_matrix: cannot start a PostgreSQL cluster: %s\n", err);
		return -1;
	}
	snprintf(role_password, sizeof role_password, "pw%08lx%08lx", (unsigned long)random(),
		 (unsigned long)random());
	/* CREATE DATABASE cannot run in a multi-statement string */
	snprintf(sql, sizeof sql, "CREATE ROLE " SM_ROLE " LOGIN PASSWORD '%s'", role_password);
	if (pg_harness_exec(cluster, NULL, sql, err, sizeof err) != 0 ||
	    pg_harness_exec(cluster, NULL, "CREATE DATABASE " SM_DB " OWNER " SM_ROLE, err,
			    sizeof err) != 0) {
		fprintf(stderr, "store_matrix: cannot create the role and database: %s\n", err);
		return -1;
	}
	pg_harness_conninfo(cp_conninfo, sizeof cp_conninfo, cluster, SM_ROLE, role_password,
			    SM_DB);
	return 0;
}
#else
int sm_pg_exec(const char *sql, char *err, size_t cap)
{
	(void)sql;
	snprintf(err, cap, "no PostgreSQL store in this build");
	return -1;
}

int sm_pg_exec_super(const char *sql, char *err, size_t cap)
{
	return sm_pg_exec(sql, err, cap);
}

int sm_pg_query1(const char *sql, char *out, size_t cap)
{
	(void)sql;
	if (cap > 0)
		out[0] = '\0';
	return -1;
}

int sm_pg_port(void)
{
	return 0;
}

const char *sm_pg_bindir(void)
{
	return "";
}

void sm_pg_restart(void)
{
	ck_abort_msg("no PostgreSQL store in this build");
}

void sm_pg_conninfo_db(char *out, size_t cap, const char *dbname)
{
	(void)dbname;
	if (cap > 0)
		out[0] = '\0';
}
#endif

int sm_exec(const char *name, const char *sql, char *err, size_t cap)
{
	sqlite3 *raw = NULL;
	char *msg = NULL;
	int rc;

	if (pass_pg) {
#ifdef HAVE_STORE_PG
		char e[512];
		return exec_on(cp_conninfo, name, sql, err ? err : e, err ? cap : sizeof e);
#else
		return -1;
#endif
	}
	if (sqlite3_open(name, &raw) != SQLITE_OK) {
		sqlite3_close(raw);
		return -1;
	}
	sqlite3_busy_timeout(raw, 5000);
	rc = sqlite3_exec(raw, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(raw, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK && err != NULL)
		snprintf(err, cap, "%s", msg ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
	sqlite3_close(raw);
	return rc == SQLITE_OK ? 0 : -1;
}

int sm_run(Suite *(*make)(void))
{
	const char *sel = getenv("ENVDB_TEST_STORE");
	bool want_sqlite = sel == NULL || *sel == '\0' || strcmp(sel, "both") == 0 ||
			   strcmp(sel, "sqlite") == 0;
	bool want_pg = sel == NULL || *sel == '\0' || strcmp(sel, "both") == 0 ||
		       strcmp(sel, "postgresql") == 0;
	int failed = 0;

	srandom((unsigned)getpid());
	if (!want_sqlite && !want_pg) {
		fprintf(stderr, "ENVDB_TEST_STORE=%s: expected sqlite, postgresql or both\n", sel);
		return 1;
	}
	if (want_sqlite) {
		SRunner *sr;
		pass_pg = false;
		sr = srunner_create(make());
		fprintf(stderr, "store_matrix: store sqlite\n");
		srunner_run_all(sr, CK_ENV);
		failed += srunner_ntests_failed(sr);
		srunner_free(sr);
	}
	if (want_pg) {
#ifdef HAVE_STORE_PG
		int rc = pg_start();
		if (rc < 0)
			return failed + 1;
		if (rc == 0) {
			SRunner *sr;
			pass_pg = true;
			sr = srunner_create(make());
			fprintf(stderr, "store_matrix: store postgresql (port %d)\n",
				pg_harness_port(cluster));
			srunner_run_all(sr, CK_ENV);
			failed += srunner_ntests_failed(sr);
			srunner_free(sr);
			pg_harness_stop(cluster);
			cluster = NULL;
		}
#else
		fprintf(stderr, "store_matrix: postgresql pass skipped: no PostgreSQL store in "
				"this build\n");
#endif
	}
	return failed;
}
