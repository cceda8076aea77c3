/*
 * core/store_pg.h — the PostgreSQL control-plane store (core/store_pg.c):
 * the backend "postgresql" of store_backend.h and its SQL dialect.  Built
 * when configure finds libpq (HAVE_STORE_PG); without it nothing of
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

/** Receives the id of an environment whose resolve results another
 * process changed (committed), or NULL: anything may have changed (the
 * watch was interrupted and may have missed notifications).  Called on the
 * watch's own thread, never with the store's lock held. */
typedef void (*envdbi_store_change_cb)(void *cb_ctx, const char *environment_id);
typedef struct envdbi_store_watch envdbi_store_watch;

#ifdef HAVE_STORE_PG
/* The operations table, envdbi_store_backend_pg: store_backend.h. */
/** The PostgreSQL dialect of the shared SQL generator (store_sql.c). */
extern const envdbi_sql_dialect envdbi_sql_dialect_pg;

/**
 * Watch the changes committed to control plane `s` by every process on
 * every host (LISTEN on a connection of its own, fed by the triggers that
 * NOTIFY in the committing transaction).  cb(cb_ctx, id) runs on the
 * watch's thread within milliseconds of the commit; when the channel
 * breaks (server restart, network) cb(cb_ctx, NULL) says everything may be
 * stale, a warning says that other hosts' changes are seen at the cache TTL
 * until it is back, and the watch reconnects by itself (then cb(NULL)
 * again).  Returns 0 with *out (stop with envdbi_store_watch_stop()), or
 * ENVDB_ERR_NOT_SUPPORTED (nothing reported) for a store of another
 * backend.  `s` is borrowed until stop; `cb_ctx` too.
 */
int envdbi_store_watch_start(envdbi_store_watch **out, envdbi_store *s, envdbi_store_change_cb cb,
			     void *cb_ctx);
/** Stop and free; NULL allowed.  cb is not called after it returns. */
void envdbi_store_watch_stop(envdbi_store_watch *w);
#else
static inline int envdbi_store_watch_start(envdbi_store_watch **out, envdbi_store *s,
					   envdbi_store_change_cb cb, void *cb_ctx)
{
	(void)s;
	(void)cb;
	(void)cb_ctx;
	*out = NULL;
	return ENVDB_ERR_NOT_SUPPORTED;
}
static inline void envdbi_store_watch_stop(envdbi_store_watch *w)
{
	(void)w;
}
#endif

#endif /* ENVDB_STORE_PG_H */
