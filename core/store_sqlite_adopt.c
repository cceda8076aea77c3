/*
 * core/store_sqlite_adopt.c — the SQLite backend's side of `envdb store
 * copy` (store_copy.h): the source's deployment id into a new, empty
 * control-plane file.
 */
#include "config.h"

#include <sqlite3.h>

#include "store_copy.h"
#include "store_sqlite.h"

int envdbi_store_sqlite_adopt_deployment(envdbi_store *s, const char *id, int64_t created_at)
{
	sqlite3 *db = envdbi_store_sqlite_lock(s);
	sqlite3_stmt *st = NULL;
	int rc;

	if (db == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "control plane: adopt a deployment id: not an SQLite store");
	/* The row is replaced, not updated: REPLACE deletes the conflicting
	 * row without firing the delete trigger (recursive_triggers is off),
	 * and the update trigger does not apply to an INSERT.  Only the copy
	 * into an empty control plane, inside its transaction, gets here. */
	rc = sqlite3_prepare_v2(db,
				"INSERT OR REPLACE INTO \"sys_deployment\" (\"singleton\", \"id\", "
				"\"created_at\") VALUES (1, ?1, ?2)",
				-1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, created_at);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
	sqlite3_finalize(st);
	if (rc != SQLITE_OK)
		rc = envdbi_error(ENVDB_ERR_IO, NULL, "control plane %s: set the deployment id: %s",
				  envdbi_store_describe(s), sqlite3_errmsg(db));
	envdbi_store_sqlite_unlock(s);
	return rc;
}
