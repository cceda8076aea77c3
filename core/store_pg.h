/*
 * core/store_pg.h — the PostgreSQL control-plane store (core/store_pg.c):
 * the backend "postgresql" of store_backend.h and its SQL dialect.  Built
 * when configure finds libpq (ENVDB_HAVE_PG_STORE); without it nothing of
 * this file exists and the manifest's `driver: postgresql` is refused.
 *
 * The manifest:
 *   control_plane:
 *     driver: postgresql
 *     conninfo_file: /etc/envdb/control.conninfo   # owner-only, like every secret
 *     # or conninfo_env: ENVDB_CONTROL_CONNINFO
 *     schema: envdb                                 # default envdb
 * The conninfo is a libpq connection string (key=value or a URI); the
 * connecting role must own the schema (or be allowed to create it: envdb
 * creates and migrates it itself, like the SQLite file).
 */
#ifndef ENVDB_STORE_PG_H
#define ENVDB_STORE_PG_H

#include "store_backend.h"

#ifdef ENVDB_HAVE_PG_STORE
/** The operations table (core/store_pg.c). */
extern const envdbi_store_backend_ops envdbi_store_backend_pg;
/** The PostgreSQL dialect of the shared SQL generator (store_sql.c). */
extern const envdbi_sql_dialect envdbi_sql_dialect_pg;
#endif

#endif /* ENVDB_STORE_PG_H */
