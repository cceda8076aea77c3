/*
 * tests/store_matrix_cp.h — opening the current control plane of
 * tests/store_matrix.h through the internal store API (for the tests that
 * link core/libenvdb-cp.la: test_store, test_check).  Header-only.
 */
#ifndef ENVDB_STORE_MATRIX_CP_H
#define ENVDB_STORE_MATRIX_CP_H

#include <sqlite3.h>

#include "store.h"
#include "store_matrix.h"

/* Open control plane `name` (a file, or a schema of the PostgreSQL pass
 * reached through the pass's conninfo file) as a manifest names it. */
static inline int cp_open_named(envdbi_store **s, const char *name, int64_t busy, bool legacy,
				unsigned flags)
{
	envdbi_manifest m = {0};

	if (!sm_pg())
		return envdbi_store_open_path(s, name, busy, legacy, flags);
	m.control_plane_driver = (char *)"postgresql";
	m.control_plane_conninfo_file = (char *)sm_conninfo_file();
	m.control_plane_schema = (char *)name;
	m.busy_timeout_ms = busy;
	m.legacy_shim = legacy;
	return envdbi_store_open(s, &m, flags);
}

/* The current test's control plane. */
static inline int cp_open(envdbi_store **s, int64_t busy, bool legacy, unsigned flags)
{
	return cp_open_named(s, sm_name(), busy, legacy, flags);
}

/* Run SQL directly on the current control plane, as another process
 * would: sqlite3 on the file (with foreign keys on, as every envdb process
 * has them: SQLite enforces references per connection that asks), or a
 * libpq session of the schema's owner.  0 when the statements succeeded;
 * the error in err (may be NULL). */
static inline int cp_raw_exec(const char *sql, char *err, size_t cap)
{
	sqlite3 *raw = NULL;
	char *msg = NULL;
	int rc;

	if (sm_pg())
		return sm_pg_exec(sql, err, cap);
	if (sqlite3_open(sm_name(), &raw) != SQLITE_OK) {
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

#endif /* ENVDB_STORE_MATRIX_CP_H */
