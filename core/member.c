/*
 * core/member.c — environment members (sys_environment_member): add, remove
 * and list the users of an environment with their role.  A member's role
 * decides what resolve hands out (reader and guest never get full access),
 * so every change invalidates the environment's resolve cache.
 *
 * Adding a user who already is a member fails with ENVDB_ERR_EXISTS, unless
 * the caller asks for ENVDB_MEMBER_UPDATE: then the role (and invited_by)
 * change.  Failing is the default so that a typo in a script cannot silently
 * demote an owner.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"
#include "store.h"

int envdb_member_add(envdb_ctx *ctx, const char *organization_id, const char *slug,
		     const char *user_id, const char *role, const envdb_member_opts *opts)
{
	const envdbi_field_def *role_f = envdbi_schema_field(ENVDBI_OBJ_MEMBER, "role");
	const char *invited_by = NULL;
	unsigned flags = 0;
	envdb_environment *env = NULL;
	envdb_member *cur = NULL;
	bool txn = false, changed = false;
	int rc;

	if ((rc = envdbi_check_env_call(ctx, organization_id, slug, "member add")) != ENVDB_OK)
		return rc;
	if (opts != NULL) {
		if (ENVDB_STRUCT_HAS(opts, envdb_member_opts, invited_by))
			invited_by = opts->invited_by;
		if (ENVDB_STRUCT_HAS(opts, envdb_member_opts, flags))
			flags = opts->flags;
	}
	if (user_id == NULL || user_id[0] == '\0')
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "environment %s/%s: member add: empty user id", organization_id,
				    slug);
	if ((rc = envdbi_check_ident("member add", "user id", user_id)) != ENVDB_OK ||
	    (invited_by != NULL && invited_by[0] != '\0' &&
	     (rc = envdbi_check_ident("member add", "invited_by", invited_by)) != ENVDB_OK))
		return envdbi_error_prefix("environment %s/%s: ", organization_id, slug);
	if (role == NULL || !envdbi_schema_enum_ok(role_f, role)) {
		envdbi_strbuf roles = ENVDBI_STRBUF_INIT;

		envdbi_schema_enum_list(&roles, role_f);
		rc = envdbi_error(ENVDB_ERR_INVALID, NULL,
				  "environment %s/%s: member add %s: role '%s' is not one of %s",
				  organization_id, slug, user_id, role ? role : "(null)",
				  roles.data ? roles.data : "the schema's roles");
		envdbi_strbuf_free(&roles);
		return rc;
	}
	if (invited_by != NULL && invited_by[0] == '\0')
		invited_by = NULL;

	if ((rc = envdbi_store_begin(ctx->store)) != 0)
		goto out;
	txn = true;
	if ((rc = envdbi_store_env_get_by_slug(ctx->store, &env, organization_id, slug)) != 0)
		goto out;
	if (strcmp(env->status, "archived") == 0 || strcmp(env->status, "failed") == 0) {
		rc = envdbi_error(ENVDB_ERR_STATE, NULL,
				  "environment %s/%s: member add %s: the environment is %s",
				  organization_id, slug, user_id, env->status);
		goto out;
	}
	/* An intent is not an environment yet: its provisioning may still be
	 * rolled back (the slug freed and taken again), and a member added
	 * now would outlive that into whatever environment comes next. */
	if (strcmp(env->status, "provisioning") == 0) {
		rc = envdbi_error(ENVDB_ERR_STATE, NULL,
				  "environment %s/%s: member add %s: the environment is still "
				  "being provisioned; add members once it is active",
				  organization_id, slug, user_id);
		goto out;
	}
	envdb_member m = {
		.environment_id = env->id,
		.user_id = (char *)user_id,
		.role = (char *)role,
		.invited_by = (char *)invited_by,
	};
	rc = envdbi_store_member_insert(ctx->store, &m, NULL);
	if (rc == ENVDB_ERR_EXISTS && (flags & ENVDB_MEMBER_UPDATE)) {
		if ((rc = envdbi_store_member_get(ctx->store, &cur, env->id, user_id)) != 0)
			goto out;
		char *r = strdup(role), *by = invited_by ? strdup(invited_by) : NULL;
		if (r == NULL || (invited_by != NULL && by == NULL)) {
			free(r);
			free(by);
			rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "member add: out of memory");
			goto out;
		}
		free(cur->role);
		cur->role = r;
		if (by != NULL) {
			free(cur->invited_by);
			cur->invited_by = by;
		}
		rc = envdbi_store_member_update(ctx->store, cur);
	}
	if (rc != 0)
		goto out;
	rc = envdbi_store_commit(ctx->store);
	txn = false;
	changed = rc == 0;
out:
	if (txn)
		envdbi_store_rollback(ctx->store);
	if (changed)
		envdbi_cache_invalidate_env(ctx->cache, env->id);
	envdb_environment_free(env);
	envdb_member_free(cur);
	return rc;
}

int envdb_member_remove(envdb_ctx *ctx, const char *organization_id, const char *slug,
			const char *user_id)
{
	envdb_environment *env = NULL;
	bool txn = false, changed = false;
	int rc;

	if ((rc = envdbi_check_env_call(ctx, organization_id, slug, "member remove")) != ENVDB_OK)
		return rc;
	if (user_id == NULL || user_id[0] == '\0')
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "environment %s/%s: member remove: empty user id",
				    organization_id, slug);
	if ((rc = envdbi_check_ident("member remove", "user id", user_id)) != ENVDB_OK)
		return envdbi_error_prefix("environment %s/%s: ", organization_id, slug);
	if ((rc = envdbi_store_begin(ctx->store)) != 0)
		goto out;
	txn = true;
	if ((rc = envdbi_store_env_get_by_slug(ctx->store, &env, organization_id, slug)) != 0 ||
	    (rc = envdbi_store_member_delete(ctx->store, env->id, user_id)) != 0)
		goto out;
	rc = envdbi_store_commit(ctx->store);
	txn = false;
	changed = rc == 0;
out:
	if (txn)
		envdbi_store_rollback(ctx->store);
	if (changed)
		envdbi_cache_invalidate_env(ctx->cache, env->id);
	envdb_environment_free(env);
	return rc;
}

int envdb_member_list(envdb_member ***out, size_t *n, envdb_ctx *ctx,
		      const char *organization_id, const char *slug)
{
	envdb_environment *env = NULL;
	int rc;

	if (out == NULL || n == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "member list: NULL output");
	*out = NULL;
	*n = 0;
	if ((rc = envdbi_check_env_call(ctx, organization_id, slug, "member list")) != ENVDB_OK)
		return rc;
	if ((rc = envdbi_store_env_get_by_slug(ctx->store, &env, organization_id, slug)) != 0)
		return rc;
	rc = envdbi_store_member_list(ctx->store, out, n, env->id);
	envdb_environment_free(env);
	return rc;
}
