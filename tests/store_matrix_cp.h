/*
 * tests/store_matrix_cp.h — opening the current control plane of
 * tests/store_matrix.h through the internal store API (for the tests that
 * link core/libenvdb-cp.la: test_store, test_check).  Header-only.
 */
#ifndef ENVDB_STORE_MATRIX_CP_H
#define ENVDB_STORE_MATRIX_CP_H

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

/* Run SQL directly on the current control plane (sm_exec()). */
static inline int cp_raw_exec(const char *sql, char *err, size_t cap)
{
	return sm_exec(sm_name(), sql, err, cap);
}

#endif /* ENVDB_STORE_MATRIX_CP_H */
