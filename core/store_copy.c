/*
 * core/store_copy.c — envdb_store_copy(): every object of one control plane
 * into another, new and empty one, of any store backend (an SQLite file to
 * a PostgreSQL schema, and back).  Backend-neutral: it reads the rows with
 * envdbi_store_rows() and writes them with the typed inserts, which
 * validate every row as any write does; no SQL here.
 *
 * What makes it safe:
 *   - the source's write lock is held from the first read to the end (its
 *     writers wait): the copy is of one state and nothing written meanwhile
 *     can be missed;
 *   - the target is written in ONE transaction, committed only after the
 *     row count of every object matches the source's and envdb check of
 *     the target (inside that transaction) finds nothing the source does
 *     not have: interrupted anywhere (an error, SIGKILL, a lost
 *     connection), the target stays empty;
 *   - the target must be empty (checked in the same transaction), and the
 *     deployment id moves with the rows: the adapters' ownership markers
 *     carry it, so the databases stay this deployment's.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "failpoint.h"
#include "schema.h"
#include "store.h"
#include "store_copy.h"

static int adopt_deployment(envdbi_store *dst, const char *id, int64_t created_at)
{
	const char *driver = envdbi_store_driver(dst);

	if (strcmp(driver, "sqlite") == 0)
		return envdbi_store_sqlite_adopt_deployment(dst, id, created_at);
#ifdef HAVE_STORE_PG
	if (strcmp(driver, "postgresql") == 0)
		return envdbi_store_pg_adopt_deployment(dst, id, created_at);
#endif
	return envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL,
			    "store copy: the %s store cannot take a deployment id", driver);
}

/* Insert record `rec` of object `o` as it is (its id, times and values). */
static int insert_row(envdbi_store *dst, const envdbi_object_def *o, const void *rec)
{
	if (o == ENVDBI_OBJ_ENVIRONMENT)
		return envdbi_store_env_insert(dst, rec, NULL);
	if (o == ENVDBI_OBJ_DATABASE)
		return envdbi_store_db_insert(dst, rec, NULL);
	if (o == ENVDBI_OBJ_CREDENTIAL)
		return envdbi_store_cred_insert(dst, rec, NULL);
	if (o == ENVDBI_OBJ_MEMBER)
		return envdbi_store_member_insert(dst, rec, NULL);
	if (o == ENVDBI_OBJ_TENANT_DB)
		return envdbi_store_tenant_db_insert(dst, rec, NULL);
	if (o == ENVDBI_OBJ_PACKAGE)
		return envdbi_store_package_insert(dst, rec, NULL);
	return envdbi_error(ENVDB_ERR_NOT_SUPPORTED, NULL, "store copy: %s: no insert", o->name);
}

static size_t *report_slot(envdb_store_copy_report *rep, const envdbi_object_def *o)
{
	if (o == ENVDBI_OBJ_ENVIRONMENT)
		return &rep->environments;
	if (o == ENVDBI_OBJ_DATABASE)
		return &rep->databases;
	if (o == ENVDBI_OBJ_CREDENTIAL)
		return &rep->credentials;
	if (o == ENVDBI_OBJ_MEMBER)
		return &rep->members;
	if (o == ENVDBI_OBJ_TENANT_DB)
		return &rep->legacy_tenant_databases;
	return &rep->legacy_package_installations;
}

static void rows_free(const envdbi_object_def *o, void **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		envdbi_record_free(o, v[i]);
	free(v);
}

/* Is violation `t` (of the target) one the source has too? */
static bool known(envdb_violation *t, envdb_violation **src, size_t n_src)
{
	for (size_t i = 0; i < n_src; i++)
		if (strcmp(src[i]->invariant, t->invariant) == 0 &&
		    strcmp(src[i]->row_ids, t->row_ids) == 0)
			return true;
	return false;
}

/* A cheap read on the source between the target's writes: a server-side
 * source would otherwise end its session, idle in a transaction (the
 * PostgreSQL store's idle_in_transaction_session_timeout, a minute and
 * more), while a big target is written. */
static int keep_alive(envdbi_store *src)
{
	int rc = envdbi_store_env_org_exists(src, "-");
	return rc < 0 ? rc : 0;
}

/* Copy every object of src into dst; both have a transaction open. */
static int copy_rows(envdb_store_copy_report *rep, envdbi_store *src, envdbi_store *dst)
{
	bool legacy = envdbi_store_legacy(src);
	int rc;

	/* empty: nothing of another deployment is mixed in */
	for (size_t i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		void **v = NULL;
		size_t n = 0;

		if (o->legacy && !legacy)
			continue;
		if ((rc = envdbi_store_rows(dst, o, &v, &n)) != 0)
			return rc;
		rows_free(o, v, n);
		if (n > 0)
			return envdbi_error(
				ENVDB_ERR_EXISTS, NULL,
				"store copy: the target %s is not empty (%zu rows in %s): "
				"copy into a new control plane only",
				envdbi_store_describe(dst), n, o->name);
	}
	if ((rc = adopt_deployment(dst, envdbi_store_deployment_id(src),
				   envdbi_store_deployment_created_at(src))) != 0)
		return rc;
	/* in dependency order (referenced objects first) */
	for (size_t i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		void **v = NULL, **w = NULL;
		size_t n = 0, m = 0;

		if (o->legacy && !legacy)
			continue;
		if ((rc = envdbi_store_rows(src, o, &v, &n)) != 0)
			return rc;
		for (size_t k = 0; k < n && rc == 0; k++) {
			if ((rc = insert_row(dst, o, v[k])) != 0)
				envdbi_error_prefix("store copy: %s row %zu of %zu: ", o->name,
						    k + 1, n);
			else if (k % 1000 == 999)
				rc = keep_alive(src);
		}
		rows_free(o, v, n);
		if (rc != 0)
			return rc;
		if ((rc = envdbi_store_rows(dst, o, &w, &m)) != 0)
			return rc;
		rows_free(o, w, m);
		if (m != n)
			return envdbi_error(
				ENVDB_ERR_INTEGRITY, NULL,
				"store copy: %s: %zu rows in the source, %zu in the target",
				o->name, n, m);
		*report_slot(rep, o) = n;
	}
	return 0;
}

/* envdb check of both, in their transactions: the target may have no
 * violation the source does not have. */
static int check_target(envdb_store_copy_report *rep, envdbi_store *src, envdbi_store *dst)
{
	envdb_violation **sv = NULL, **tv = NULL;
	size_t sn = 0, tn = 0;
	int rc;

	if ((rc = envdbi_check_store(&sv, &sn, src)) != 0 ||
	    (rc = envdbi_check_store(&tv, &tn, dst)) != 0 || (rc = keep_alive(src)) != 0)
		goto out;
	rep->source_violations = sn;
	rep->target_violations = tn;
	for (size_t i = 0; i < tn; i++)
		if (!known(tv[i], sv, sn)) {
			rc = envdbi_error(ENVDB_ERR_INTEGRITY, NULL,
					  "store copy: envdb check of the target finds what the "
					  "source does not have: %s %s (%s): %s",
					  tv[i]->object, tv[i]->invariant, tv[i]->row_ids,
					  tv[i]->message);
			break;
		}
out:
	envdb_violation_list_free(sv, sn);
	envdb_violation_list_free(tv, tn);
	return rc;
}

int envdb_store_copy(envdb_store_copy_report *rep, envdb_ctx *ctx, const char *target_manifest)
{
	envdb_store_copy_report r = ENVDB_STORE_COPY_REPORT_INIT;
	envdbi_manifest *m = NULL;
	envdbi_store *src, *dst = NULL;
	bool src_tx = false, dst_tx = false;
	int rc;

	if (ctx == NULL || target_manifest == NULL || target_manifest[0] == '\0')
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "store copy: no context or no target manifest given");
	if ((src = ctx->store) == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "store copy: the context has no control plane open");
	if (envdbi_store_is_snapshot(src))
		return envdbi_error(ENVDB_ERR_MISUSE, NULL,
				    "store copy: the source is a snapshot (a dry run)");
	if ((rc = envdbi_manifest_load(&m, target_manifest)) != 0) {
		envdbi_error_prefix("store copy: target manifest: ");
		return rc;
	}
	/* the legacy objects go when the source has them */
	m->legacy_shim = envdbi_store_legacy(src);
	if ((rc = envdbi_store_open(&dst, m, ENVDB_OPEN_CREATE)) != 0) {
		envdbi_error_prefix("store copy: target: ");
		goto out;
	}
	if (strcmp(envdbi_store_driver(dst), envdbi_store_driver(src)) == 0 &&
	    strcmp(envdbi_store_describe(dst), envdbi_store_describe(src)) == 0) {
		rc = envdbi_error(ENVDB_ERR_MISUSE, NULL, "store copy: the target %s is the source",
				  envdbi_store_describe(src));
		goto out;
	}
	if ((rc = envdbi_store_begin(src)) != 0)
		goto out;
	src_tx = true;
	if ((rc = envdbi_store_begin(dst)) != 0)
		goto out;
	dst_tx = true;
	if ((rc = copy_rows(&r, src, dst)) != 0 || (rc = check_target(&r, src, dst)) != 0 ||
	    (rc = ENVDB_FAILPOINT("store_copy.commit")) != 0)
		goto out;
	rc = envdbi_store_commit(dst);
	dst_tx = false;
	if (rc != 0)
		goto out;
	envdbi_log(ENVDB_LOG_INFO,
		   "store copy: %s -> %s: %zu environments, %zu databases, %zu credentials, %zu "
		   "members",
		   envdbi_store_describe(src), envdbi_store_describe(dst), r.environments,
		   r.databases, r.credentials, r.members);
	if (rep != NULL)
		*rep = r;
out:
	if (dst_tx)
		envdbi_store_rollback(dst);
	if (src_tx)
		envdbi_store_rollback(src); /* nothing written: releases the lock */
	envdbi_store_close(dst);
	envdbi_manifest_free(m);
	return rc;
}
