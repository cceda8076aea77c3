/*
 * core/store_copy.h — what `envdb store copy` (core/store_copy.c) needs of
 * each store backend beyond the operations table: putting the source's
 * deployment id into a new, empty control plane.  Implemented by each
 * backend in a file of its own (core/store_pg.c, core/store_sqlite_adopt.c).
 */
#ifndef ENVDB_STORE_COPY_H
#define ENVDB_STORE_COPY_H

#include "store.h"

/**
 * Make (id, created_at) the deployment id of control plane `s`, inside the
 * transaction the caller has open on `s` (committed with it).  The id is
 * otherwise immutable: only the copy into an empty control plane, which
 * checked that it is empty in that same transaction, calls this.  `s`'s
 * envdbi_store_deployment_id() shows the new id after a reopen.  0 or a
 * status (reported).
 */
int envdbi_store_sqlite_adopt_deployment(envdbi_store *s, const char *id, int64_t created_at);
#ifdef HAVE_STORE_PG
int envdbi_store_pg_adopt_deployment(envdbi_store *s, const char *id, int64_t created_at);
#endif

#endif /* ENVDB_STORE_COPY_H */
