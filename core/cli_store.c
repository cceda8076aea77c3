/*
 * core/cli_store.c — the envdb commands of the control-plane store:
 * `schema [--json]`, `check`, `backup`, `restore`, `store copy` and
 * `member add|remove|list`.
 * Public API only.
 */
#include "config.h"

#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* The login name of the caller, the default of --by. */
static const char *login_name(void)
{
	struct passwd *pw = getpwuid(geteuid());
	if (pw != NULL && pw->pw_name != NULL && pw->pw_name[0] != '\0')
		return pw->pw_name;
	return getenv("USER");
}

/* ---- backup, restore ---------------------------------------------------- */

int envdb_cli_backup(envdb_cli *cli, int argc, char **argv)
{
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, NULL, &pos, 1, 1)) != EX_OK)
		return rc;
	if ((rc = envdb_cli_open(cli, &ctx, 0)) != EX_OK)
		return rc;
	if ((rc = envdb_backup(ctx, pos.v[0])) != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
	} else if (cli->json) {
		rc = envdb_cli_json_print(cli, json_pack("{s:s, s:s}", "control_plane",
							 envdb_control_plane_describe(ctx), "backup",
							 pos.v[0]));
	} else {
		envdb_cli_print(cli, "backup of %s written to %s\n", envdb_control_plane_describe(ctx),
				pos.v[0]);
		rc = EX_OK;
	}
	envdb_close(ctx);
	return rc;
}

int envdb_cli_restore(envdb_cli *cli, int argc, char **argv)
{
	bool force = false;
	const envdb_cli_opt opts[] = {{"force", ENVDB_CLI_FLAG, &force}, {NULL, 0, NULL}};
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, opts, &pos, 1, 1)) != EX_OK)
		return rc;
	/* the control plane stays closed: restore replaces it */
	if ((rc = envdb_cli_open(cli, &ctx, ENVDB_OPEN_NO_STORE)) != EX_OK)
		return rc;
	if ((rc = envdb_restore(ctx, pos.v[0], force ? ENVDB_RESTORE_FORCE : 0)) != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
	} else if (cli->json) {
		rc = envdb_cli_json_print(cli, json_pack("{s:s, s:s}", "control_plane",
							 envdb_control_plane_describe(ctx), "restored_from",
							 pos.v[0]));
	} else {
		envdb_cli_print(cli, "control plane %s restored from %s (run envdb check)\n",
				envdb_control_plane_describe(ctx), pos.v[0]);
		rc = EX_OK;
	}
	envdb_close(ctx);
	return rc;
}

/* ---- store copy --------------------------------------------------------- */

int envdb_cli_store_copy(envdb_cli *cli, int argc, char **argv)
{
	envdb_store_copy_report r = ENVDB_STORE_COPY_REPORT_INIT;
	const char *to = NULL;
	const envdb_cli_opt opts[] = {{"to", ENVDB_CLI_STRING, &to}, {NULL, 0, NULL}};
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL, *target = NULL;
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, opts, &pos, 0, 0)) != EX_OK)
		return rc;
	if (to == NULL)
		return envdb_cli_fail_msg(cli, ENVDB_ERR_MISUSE,
					  "store copy: --to MANIFEST is required (the manifest "
					  "of the new control plane)");
	if ((rc = envdb_cli_open(cli, &ctx, 0)) != EX_OK)
		return rc;
	if ((rc = envdb_store_copy(&r, ctx, to)) != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto done;
	}
	/* say where it went, as that manifest names it */
	if ((rc = envdb_open(&target, to, 0)) != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto done;
	}
	if (cli->json) {
		rc = envdb_cli_json_print(
			cli, json_pack("{s:s, s:s, s:s, s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:I, s:I}",
				       "from", envdb_control_plane_describe(ctx), "to",
				       envdb_control_plane_describe(target), "deployment_id",
				       envdb_deployment_id(target), "rows", "environments",
				       (json_int_t)r.environments, "databases",
				       (json_int_t)r.databases, "credentials",
				       (json_int_t)r.credentials, "members", (json_int_t)r.members,
				       "legacy_tenant_databases",
				       (json_int_t)r.legacy_tenant_databases,
				       "legacy_package_installations",
				       (json_int_t)r.legacy_package_installations,
				       "source_violations", (json_int_t)r.source_violations,
				       "target_violations", (json_int_t)r.target_violations));
	} else {
		envdb_cli_print(cli,
				"copied %s to %s: %zu environments, %zu databases, %zu "
				"credentials, %zu members",
				envdb_control_plane_describe(ctx),
				envdb_control_plane_describe(target), r.environments, r.databases,
				r.credentials, r.members);
		if (r.legacy_tenant_databases + r.legacy_package_installations > 0)
			envdb_cli_print(cli, ", %zu legacy tenant databases, %zu package installations",
					r.legacy_tenant_databases, r.legacy_package_installations);
		envdb_cli_print(cli,
				"\ndeployment %s; envdb check: %zu violations in the source, %zu in "
				"the target\nnext: point the manifest of every host at the target\n",
				envdb_deployment_id(target), r.source_violations, r.target_violations);
		rc = EX_OK;
	}
done:
	envdb_close(target);
	envdb_close(ctx);
	return rc;
}

/* ---- schema ------------------------------------------------------------- */

int envdb_cli_schema(envdb_cli *cli, int argc, char **argv)
{
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	char *out = NULL;
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, NULL, &pos, 0, 0)) != EX_OK)
		return rc;
	/* With an explicit manifest, list what it registers (the legacy shim
	 * may be off); without one, every definition. */
	if (cli->manifest_opt != NULL || getenv("ENVDB_MANIFEST") != NULL) {
		if ((rc = envdb_cli_open(cli, &ctx, ENVDB_OPEN_NO_STORE)) != EX_OK)
			return rc;
	}
	if (cli->json) {
		json_error_t err;
		if ((rc = envdb_schema_json(&out, ctx)) != ENVDB_OK) {
			rc = envdb_cli_fail(cli, rc);
			goto done;
		}
		rc = envdb_cli_json_print(cli, json_loads(out, 0, &err));
	} else {
		if ((rc = envdb_schema_text(&out, ctx)) != ENVDB_OK) {
			rc = envdb_cli_fail(cli, rc);
			goto done;
		}
		envdb_cli_print(cli, "%s", out);
		rc = EX_OK;
	}
done:
	envdb_free(out);
	envdb_close(ctx);
	return rc;
}

/* ---- check -------------------------------------------------------------- */

int envdb_cli_check(envdb_cli *cli, int argc, char **argv)
{
	envdb_violation **v = NULL;
	bool no_decrypt = false;
	envdb_cli_opt opts[] = {
		{"no-decrypt", ENVDB_CLI_FLAG, &no_decrypt},
		{NULL, 0, NULL},
	};
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	size_t n = 0;
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, opts, &pos, 0, 0)) != EX_OK)
		return rc;
	if ((rc = envdb_cli_open(cli, &ctx, 0)) != EX_OK)
		return rc;
	if ((rc = envdb_check_flags(&v, &n, ctx, no_decrypt ? ENVDB_CHECK_NO_DECRYPT : 0)) !=
	    ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto out;
	}
	if (cli->json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(arr, envdb_cli_violation_json(v[i]));
		rc = envdb_cli_json_print(cli, json_pack("{s:s?, s:b, s:I, s:o}", "deployment_id",
							 envdb_deployment_id(ctx), "ok", n == 0,
							 "count", (json_int_t)n, "violations", arr));
	} else {
		static const char *const h[] = {"OBJECT", "INVARIANT", "ROW IDS", "MESSAGE", NULL};
		envdb_cli_table *t = envdb_cli_table_new(2, h);

		envdb_cli_note(cli, "deployment %s\n", envdb_deployment_id(ctx));
		for (size_t i = 0; i < n; i++)
			envdb_cli_table_rowf(t, v[i]->object, v[i]->invariant, v[i]->row_ids,
					     v[i]->message);
		envdb_cli_table_print(cli, t);
		if (n == 0)
			envdb_cli_note(cli, "ok: every invariant holds\n");
		else
			envdb_cli_error(cli, "check: %zu violation%s found", n, n == 1 ? "" : "s");
	}
	if (rc == EX_OK && n > 0)
		rc = EX_DATAERR;
out:
	envdb_violation_list_free(v, n);
	envdb_close(ctx);
	return rc;
}

/* ---- members ------------------------------------------------------------ */

/* After `member add`: {"environment", "member"} with --json, else the
 * member's row (nothing in table mode: the caller says it).  `key`: the
 * document's key. */
static int member_result(envdb_cli *cli, envdb_ctx *ctx, const envdb_cli_env_ref *ref,
			 const char *user, const char *key)
{
	envdb_environment *env = NULL;
	envdb_member **v = NULL, *m = NULL;
	size_t n = 0, i;
	int rc = EX_OK;

	(void)envdb_env_get(&env, ctx, ref->org, ref->slug);
	(void)envdb_member_list(&v, &n, ctx, ref->org, ref->slug);
	envdb_error_clear();
	for (i = 0; i < n && m == NULL; i++)
		if (strcmp(v[i]->user_id, user) == 0)
			m = v[i];
	if (cli->json) {
		rc = envdb_cli_json_print(cli, json_pack("{s:o, s:o}", "environment",
							 envdb_cli_env_json(env), key,
							 envdb_cli_member_json(m)));
	} else if (m != NULL && (cli->quiet || cli->output == ENVDB_CLI_OUT_TSV)) {
		envdb_cli_table *t = envdb_cli_member_table();

		envdb_cli_member_row(t, m);
		rc = envdb_cli_table_print(cli, t);
	}
	envdb_member_list_free(v, n);
	envdb_environment_free(env);
	return rc;
}

int envdb_cli_member_add(envdb_cli *cli, int argc, char **argv)
{
	const char *by = NULL;
	bool update = false;
	envdb_cli_opt opts[] = {
		{"by", ENVDB_CLI_STRING, &by},
		{"update", ENVDB_CLI_FLAG, &update},
		{NULL, 0, NULL},
	};
	envdb_member_opts mo = ENVDB_MEMBER_OPTS_INIT;
	envdb_cli_env_ref ref;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, opts, &pos, 3, 3)) != EX_OK)
		return rc;
	if ((rc = envdb_cli_env_ref_parse(cli, &ref, pos.v[0])) != EX_OK)
		return rc;
	if (by == NULL && (by = login_name()) == NULL)
		return envdb_cli_usage(cli, "cannot tell who you are: give --by USER");
	if ((rc = envdb_cli_open(cli, &ctx, 0)) != EX_OK)
		return rc;
	mo.invited_by = by;
	mo.flags = update ? ENVDB_MEMBER_UPDATE : 0;
	rc = envdb_member_add(ctx, ref.org, ref.slug, pos.v[1], pos.v[2], &mo);
	if (rc != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto out;
	}
	rc = member_result(cli, ctx, &ref, pos.v[1], "member");
	if (rc == EX_OK)
		envdb_cli_note(cli, "%s: %s is now %s\n", pos.v[0], pos.v[1], pos.v[2]);
out:
	envdb_close(ctx);
	return rc;
}

/* Whether `user` is the only owner of the environment (false when the
 * members cannot be listed: the removal then reports what is wrong). */
static bool last_owner(envdb_ctx *ctx, const envdb_cli_env_ref *ref, const char *user)
{
	envdb_member **v = NULL;
	size_t n = 0, owners = 0, i;
	bool is_owner = false;

	if (envdb_member_list(&v, &n, ctx, ref->org, ref->slug) != ENVDB_OK) {
		envdb_error_clear();
		return false;
	}
	for (i = 0; i < n; i++) {
		if (strcmp(v[i]->role, "owner") != 0)
			continue;
		owners++;
		if (strcmp(v[i]->user_id, user) == 0)
			is_owner = true;
	}
	envdb_member_list_free(v, n);
	return is_owner && owners == 1;
}

/* Removing the last owner leaves an environment nobody owns (`member add
 * ... owner` repairs it; `check` does not report it: environments migrated
 * from v4 without --by have no member at all): asked first. */
int envdb_cli_member_remove(envdb_cli *cli, int argc, char **argv)
{
	bool yes = false;
	envdb_cli_opt opts[] = {
		{"yes", ENVDB_CLI_FLAG, &yes},
		{NULL, 0, NULL},
	};
	envdb_cli_env_ref ref;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	int rc;

	if ((rc = envdb_cli_env_begin(cli, argc, argv, opts, &pos, 2, 2, &ref, &ctx)) != EX_OK)
		return rc;
	if (last_owner(ctx, &ref, pos.v[1]) &&
	    (rc = envdb_cli_confirm(cli, yes,
				    "remove %s, the last owner of environment %s/%s (it is left "
				    "without an owner)",
				    CLI_Q(pos.v[1]), ref.org, ref.slug)) != EX_OK)
		goto out;
	rc = envdb_member_remove(ctx, ref.org, ref.slug, pos.v[1]);
	if (rc != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto out;
	}
	if (cli->json) {
		envdb_environment *env = NULL;

		(void)envdb_env_get(&env, ctx, ref.org, ref.slug);
		envdb_error_clear();
		rc = envdb_cli_json_print(cli, json_pack("{s:o, s:{s:s}}", "environment",
							 envdb_cli_env_json(env), "removed",
							 "user_id", pos.v[1]));
		envdb_environment_free(env);
	} else {
		envdb_cli_note(cli, "%s: %s removed\n", pos.v[0], pos.v[1]);
	}
out:
	envdb_close(ctx);
	return rc;
}

int envdb_cli_member_list(envdb_cli *cli, int argc, char **argv)
{
	envdb_member **v = NULL;
	envdb_cli_env_ref ref;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	size_t n = 0;
	int rc;

	if ((rc = envdb_cli_env_begin(cli, argc, argv, NULL, &pos, 1, 1, &ref, &ctx)) !=
	    EX_OK)
		return rc;
	if ((rc = envdb_member_list(&v, &n, ctx, ref.org, ref.slug)) != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto out;
	}
	if (cli->json) {
		json_t *arr = json_array();
		envdb_environment *env = NULL;

		(void)envdb_env_get(&env, ctx, ref.org, ref.slug);
		envdb_error_clear();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(arr, envdb_cli_member_json(v[i]));
		rc = envdb_cli_json_print(cli, json_pack("{s:o, s:o}", "environment",
							 envdb_cli_env_json(env), "members", arr));
		envdb_environment_free(env);
	} else {
		envdb_cli_table *t = envdb_cli_member_table();

		for (size_t i = 0; i < n; i++)
			envdb_cli_member_row(t, v[i]);
		rc = envdb_cli_table_print(cli, t);
		if (n == 0 && !cli->quiet)
			envdb_cli_error(cli, "%s: no members", pos.v[0]);
	}
out:
	envdb_member_list_free(v, n);
	envdb_close(ctx);
	return rc;
}
