/*
 * core/cli_env.c — the envdb commands over environments and credentials:
 * org provision, env provision/list/show/archive/delete, cred
 * rotate/complete/list/revoke, resolve, reconcile and key rewrap.  Thin
 * wrappers over the public API; every command prints text, or one JSON
 * document with --json.  No secret is printed unless `resolve --reveal`.
 */
#include "config.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <envdb/adapter.h>

#include "cli.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* The login name of the caller, for --by. */
static const char *login_name(void)
{
	struct passwd *pw = getpwuid(geteuid());
	const char *env;

	if (pw != NULL && pw->pw_name != NULL && pw->pw_name[0] != '\0')
		return pw->pw_name;
	env = getenv("LOGNAME");
	if (env == NULL || *env == '\0')
		env = getenv("USER");
	return env != NULL && *env != '\0' ? env : NULL;
}

/* ------------------------------------------------------------------------ */
/* org provision, env provision                                              */
/* ------------------------------------------------------------------------ */

typedef struct prov_cli_opts {
	const char *slug, *type, *by, *driver, *region, *plan, *display_name, *metadata;
	int64_t storage_mb;
	bool is_default;
} prov_cli_opts;

static int provision_finish(envdb_cli *cli, envdb_ctx *ctx, int rc, envdb_environment *env)
{
	envdb_database *db = NULL;
	int ex;

	if (rc != ENVDB_OK) {
		ex = envdb_cli_fail(cli, rc);
		envdb_close(ctx);
		return ex;
	}
	(void)envdb_env_database(&db, ctx, env->organization_id, env->slug);
	if (cli->json) {
		json_t *doc = json_pack("{s:o, s:o}", "environment", envdb_cli_env_json(env),
					"database", envdb_cli_db_json(db));

		ex = envdb_cli_json_print(cli, doc);
	} else if (cli->quiet || cli->output == ENVDB_CLI_OUT_TSV) {
		envdb_cli_table *t = envdb_cli_env_table();

		envdb_cli_env_row(t, env);
		ex = envdb_cli_table_print(cli, t);
	} else {
		envdb_cli_print(cli, "provisioned %s/%s (%s, %s)%s\n", env->organization_id,
				env->slug, env->env_type, env->id, env->is_default ? " default" : "");
		if (db != NULL)
			envdb_cli_print(cli, "database %s via %s: %s\n", db->database_name, db->driver,
					db->database_url);
		envdb_cli_print(cli, "owner %s\n", env->created_by);
		ex = EX_OK;
	}
	envdb_database_free(db);
	envdb_environment_free(env);
	envdb_close(ctx);
	return ex;
}

static int provision_cmd(envdb_cli *cli, int argc, char **argv, bool org_mode)
{
	prov_cli_opts o;
	envdb_cli_opt org_opts[] = {
		{"slug", ENVDB_CLI_STRING, &o.slug},
		{"type", ENVDB_CLI_STRING, &o.type},
		{"by", ENVDB_CLI_STRING, &o.by},
		{"driver", ENVDB_CLI_STRING, &o.driver},
		{"region", ENVDB_CLI_STRING, &o.region},
		{"plan", ENVDB_CLI_STRING, &o.plan},
		{"storage-mb", ENVDB_CLI_INT, &o.storage_mb},
		{"display-name", ENVDB_CLI_STRING, &o.display_name},
		{"metadata", ENVDB_CLI_STRING, &o.metadata},
		{NULL, 0, NULL},
	};
	envdb_cli_opt env_opts[] = {
		{"type", ENVDB_CLI_STRING, &o.type},
		{"default", ENVDB_CLI_FLAG, &o.is_default},
		{"by", ENVDB_CLI_STRING, &o.by},
		{"driver", ENVDB_CLI_STRING, &o.driver},
		{"region", ENVDB_CLI_STRING, &o.region},
		{"plan", ENVDB_CLI_STRING, &o.plan},
		{"storage-mb", ENVDB_CLI_INT, &o.storage_mb},
		{"display-name", ENVDB_CLI_STRING, &o.display_name},
		{"metadata", ENVDB_CLI_STRING, &o.metadata},
		{NULL, 0, NULL},
	};
	envdb_provision_opts po = ENVDB_PROVISION_OPTS_INIT;
	envdb_environment *env = NULL;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	int rc;

	memset(&o, 0, sizeof(o));
	rc = envdb_cli_parse(cli, argc, argv, org_mode ? org_opts : env_opts, &pos,
			     org_mode ? 1 : 2, org_mode ? 1 : 2);
	if (rc != EX_OK)
		return rc;
	if (!org_mode && o.type == NULL)
		return envdb_cli_usage(cli, "--type is required (production, sandbox, development, "
					    "test, staging, preview, trial)");
	if (o.storage_mb < 0)
		return envdb_cli_usage(cli, "--storage-mb must be positive");
	if (o.by == NULL && (o.by = login_name()) == NULL)
		return envdb_cli_usage(cli, "cannot tell who you are: give --by USER");
	po.env_type = o.type;
	po.display_name = o.display_name;
	po.driver = o.driver;
	po.region = o.region;
	po.plan = o.plan;
	po.storage_limit_mb = o.storage_mb;
	po.is_default = o.is_default;
	po.created_by = o.by;
	po.metadata = o.metadata;
	if ((rc = envdb_cli_open(cli, &ctx, 0)) != EX_OK)
		return rc;
	if (org_mode)
		rc = envdb_org_provision(&env, ctx, pos.v[0], o.slug, &po);
	else
		rc = envdb_env_provision(&env, ctx, pos.v[0], pos.v[1], &po);
	return provision_finish(cli, ctx, rc, env);
}

int envdb_cli_org_provision(envdb_cli *cli, int argc, char **argv)
{
	return provision_cmd(cli, argc, argv, true);
}

int envdb_cli_env_provision(envdb_cli *cli, int argc, char **argv)
{
	return provision_cmd(cli, argc, argv, false);
}

/* ------------------------------------------------------------------------ */
/* org list, org show: organizations are implied by their environments       */
/* ------------------------------------------------------------------------ */

static const char *const env_statuses[] = {"provisioning", "active", "suspended",
					   "archived",     "failed", "migrating"};
#define N_ENV_STATUSES (sizeof(env_statuses) / sizeof(env_statuses[0]))

/* One organization's counts, over v[first, first + n). */
typedef struct org_summary {
	const char *id;
	size_t n, by_status[N_ENV_STATUSES + 1]; /* the last: any other status */
	const envdb_environment *def;
} org_summary;

static void org_summarize(org_summary *o, envdb_environment *const *v, size_t n)
{
	size_t i, k;

	memset(o, 0, sizeof(*o));
	o->id = n ? v[0]->organization_id : NULL;
	o->n = n;
	for (i = 0; i < n; i++) {
		for (k = 0; k < N_ENV_STATUSES; k++)
			if (v[i]->status != NULL && strcmp(v[i]->status, env_statuses[k]) == 0)
				break;
		o->by_status[k]++;
		if (v[i]->is_default)
			o->def = v[i];
	}
}

static json_t *org_json(const org_summary *o)
{
	json_t *st = json_object();
	size_t k;

	for (k = 0; k < N_ENV_STATUSES; k++)
		json_object_set_new(st, env_statuses[k], json_integer((json_int_t)o->by_status[k]));
	if (o->by_status[N_ENV_STATUSES])
		json_object_set_new(st, "other",
				    json_integer((json_int_t)o->by_status[N_ENV_STATUSES]));
	return json_pack("{s:s, s:I, s:o, s:o}", "id", o->id, "environment_count", (json_int_t)o->n,
			 "by_status", st, "default_environment", envdb_cli_env_json(o->def));
}

/* "active 2, archived 1" (statuses with no environment left out). */
static void org_counts_text(char *buf, size_t cap, const org_summary *o)
{
	size_t k, used = 0;

	buf[0] = '\0';
	for (k = 0; k <= N_ENV_STATUSES && used < cap; k++) {
		int w;

		if (o->by_status[k] == 0)
			continue;
		w = snprintf(buf + used, cap - used, "%s%s %zu", used ? ", " : "",
			     k < N_ENV_STATUSES ? env_statuses[k] : "other", o->by_status[k]);
		if (w > 0)
			used += (size_t)w;
	}
}

static int cmp_env_org(const void *a, const void *b)
{
	const envdb_environment *x = *(envdb_environment *const *)a;
	const envdb_environment *y = *(envdb_environment *const *)b;
	int c = strcmp(x->organization_id, y->organization_id);

	return c ? c : strcmp(x->slug, y->slug);
}

static const char *const org_headers[] = {"ORGANIZATION", "ENVS", "DEFAULT", "BY STATUS", NULL};

int envdb_cli_org_list(envdb_cli *cli, int argc, char **argv)
{
	envdb_environment **v = NULL;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	json_t *arr = NULL;
	envdb_cli_table *t = NULL;
	size_t n = 0, i, j, n_orgs = 0;
	char num[32];
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, NULL, &pos, 0, 0)) != EX_OK)
		return rc;
	if ((rc = envdb_cli_open(cli, &ctx, 0)) != EX_OK)
		return rc;
	if ((rc = envdb_env_list(&v, &n, ctx, NULL)) != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto out;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_env_org);
	arr = cli->json ? json_array() : NULL;
	t = cli->json ? NULL : envdb_cli_table_new(0, org_headers);
	for (i = 0; i < n; i = j) {
		org_summary o;
		char counts[256];

		for (j = i + 1; j < n && strcmp(v[j]->organization_id, v[i]->organization_id) == 0;
		     j++)
			;
		org_summarize(&o, v + i, j - i);
		n_orgs++;
		if (arr != NULL) {
			json_array_append_new(arr, org_json(&o));
			continue;
		}
		org_counts_text(counts, sizeof(counts), &o);
		snprintf(num, sizeof(num), "%zu", o.n);
		envdb_cli_table_rowf(t, o.id, num, o.def ? o.def->slug : "-", counts);
	}
	if (arr != NULL) {
		rc = envdb_cli_json_print(cli, json_pack("{s:o}", "organizations", arr));
	} else {
		envdb_cli_table_print(cli, t);
		if (n_orgs == 0 && !cli->quiet)
			envdb_cli_error(cli,
					"no organizations (an organization exists while it has "
					"environments: envdb org provision ORG)");
		rc = EX_OK;
	}
out:
	envdb_environment_list_free(v, n);
	envdb_close(ctx);
	return rc;
}

int envdb_cli_org_show(envdb_cli *cli, int argc, char **argv)
{
	envdb_environment **v = NULL;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	org_summary o;
	size_t n = 0, i;
	char counts[256];
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, NULL, &pos, 1, 1)) != EX_OK)
		return rc;
	if ((rc = envdb_cli_open(cli, &ctx, 0)) != EX_OK)
		return rc;
	if ((rc = envdb_env_list(&v, &n, ctx, pos.v[0])) != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto out;
	}
	if (n == 0) {
		rc = envdb_cli_fail_msg(cli, ENVDB_ERR_NOT_FOUND,
					"organization %s: not found (it has no environments)",
					CLI_Q(pos.v[0]));
		goto out;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_env_org);
	org_summarize(&o, v, n);
	if (cli->json) {
		json_t *doc = org_json(&o), *arr = json_array();

		for (i = 0; i < n; i++)
			json_array_append_new(arr, envdb_cli_env_json(v[i]));
		if (doc != NULL)
			json_object_set_new(doc, "environments", arr);
		else
			json_decref(arr);
		rc = envdb_cli_json_print(cli, json_pack("{s:o}", "organization", doc));
		goto out;
	}
	{
		envdb_cli_table *t = envdb_cli_env_table();

		org_counts_text(counts, sizeof(counts), &o);
		envdb_cli_note(cli, "organization  %s\n", o.id);
		envdb_cli_note(cli, "default       %s\n", o.def ? o.def->slug : "- (none)");
		envdb_cli_note(cli, "environments  %zu (%s)\n\n", o.n, counts);
		for (i = 0; i < n; i++)
			envdb_cli_env_row(t, v[i]);
		rc = envdb_cli_table_print(cli, t);
	}
out:
	envdb_environment_list_free(v, n);
	envdb_close(ctx);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* env list, show, archive, delete                                           */
/* ------------------------------------------------------------------------ */

int envdb_cli_env_list(envdb_cli *cli, int argc, char **argv)
{
	envdb_environment **v = NULL;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	size_t n = 0, i;
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, NULL, &pos, 0, 1)) != EX_OK)
		return rc;
	if ((rc = envdb_cli_open(cli, &ctx, 0)) != EX_OK)
		return rc;
	rc = envdb_env_list(&v, &n, ctx, pos.n > 0 ? pos.v[0] : NULL);
	if (rc != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto out;
	}
	if (cli->json) {
		json_t *arr = json_array();

		for (i = 0; i < n; i++)
			json_array_append_new(arr, envdb_cli_env_json(v[i]));
		rc = envdb_cli_json_print(cli, json_pack("{s:o}", "environments", arr));
	} else {
		envdb_cli_table *t = envdb_cli_env_table();

		for (i = 0; i < n; i++)
			envdb_cli_env_row(t, v[i]);
		rc = envdb_cli_table_print(cli, t);
		if (n == 0 && !cli->quiet)
			envdb_cli_error(cli, "no environments%s%s",
					pos.n ? " in organization " : "",
					pos.n ? CLI_Q(pos.v[0]) : "");
	}
out:
	envdb_environment_list_free(v, n);
	envdb_close(ctx);
	return rc;
}

int envdb_cli_env_show(envdb_cli *cli, int argc, char **argv)
{
	envdb_environment *env = NULL;
	envdb_database *db = NULL;
	envdb_credential **creds = NULL;
	envdb_member **mem = NULL;
	size_t n_creds = 0, n_mem = 0, i;
	envdb_cli_env_ref ref;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	char t1[32], t2[32];
	int rc;

	if ((rc = envdb_cli_env_begin(cli, argc, argv, NULL, &pos, 1, 1, &ref, &ctx)) !=
	    EX_OK)
		return rc;
	if ((rc = envdb_env_get(&env, ctx, ref.org, ref.slug)) != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto out;
	}
	(void)envdb_env_database(&db, ctx, ref.org, ref.slug);
	(void)envdb_cred_list(&creds, &n_creds, ctx, ref.org, ref.slug);
	(void)envdb_member_list(&mem, &n_mem, ctx, ref.org, ref.slug);
	envdb_error_clear();
	if (cli->json) {
		json_t *doc = json_pack("{s:o}", "environment", envdb_cli_env_json(env));
		json_t *ca = json_array(), *ma = json_array();

		json_object_set_new(doc, "database", envdb_cli_db_json(db));
		for (i = 0; i < n_creds; i++)
			json_array_append_new(ca, envdb_cli_cred_json(creds[i]));
		for (i = 0; i < n_mem; i++)
			json_array_append_new(ma, envdb_cli_member_json(mem[i]));
		json_object_set_new(doc, "credentials", ca);
		json_object_set_new(doc, "members", ma);
		rc = envdb_cli_json_print(cli, doc);
		goto out;
	}
	if (envdb_cli_quiet_id(cli, env->id)) {
		rc = EX_OK;
		goto out;
	}
	{
		envdb_cli_table *t = envdb_cli_field_table();
		char num[32], full[400];

		snprintf(full, sizeof(full), "%s/%s", env->organization_id, env->slug);
		envdb_cli_table_rowf(t, "environment", full);
		envdb_cli_table_rowf(t, "id", env->id);
		envdb_cli_table_rowf(t, "name", env->display_name);
		envdb_cli_table_rowf(t, "type", env->env_type);
		envdb_cli_table_rowf(t, "default", env->is_default ? "yes" : "no");
		envdb_cli_table_rowf(t, "status", env->status);
		envdb_cli_table_rowf(t, "plan", env->plan);
		envdb_cli_table_rowf(t, "region", env->region);
		envdb_cli_table_rowf(t, "created",
				     envdb_cli_time_text(t1, sizeof(t1), env->created_at));
		envdb_cli_table_rowf(t, "created by", env->created_by);
		if (env->delete_after)
			envdb_cli_table_rowf(
				t, "dropped after",
				envdb_cli_time_text(t1, sizeof(t1), env->delete_after));
		if (env->lease_expires_at)
			envdb_cli_table_rowf(
				t, "lease until",
				envdb_cli_time_text(t1, sizeof(t1), env->lease_expires_at));
		if (db != NULL) {
			snprintf(num, sizeof(num), "%lld MiB", (long long)db->storage_limit_mb);
			envdb_cli_table_rowf(t, "database", db->database_name);
			envdb_cli_table_rowf(t, "driver", db->driver);
			envdb_cli_table_rowf(t, "url", db->database_url);
			envdb_cli_table_rowf(t, "storage", num);
			envdb_cli_table_rowf(
				t, "accessed",
				envdb_cli_time_text(t1, sizeof(t1), db->last_accessed_at));
		}
		for (i = 0; i < n_creds; i++) {
			char line[512];

			snprintf(line, sizeof(line), "%s %s %s created %s expires %s", creds[i]->id,
				 creds[i]->authorization, creds[i]->status,
				 envdb_cli_time_text(t1, sizeof(t1), creds[i]->created_at),
				 envdb_cli_time_text(t2, sizeof(t2), creds[i]->expires_at));
			envdb_cli_table_rowf(t, "credential", line);
		}
		for (i = 0; i < n_mem; i++) {
			char line[512];

			snprintf(line, sizeof(line), "%s %s", mem[i]->user_id, mem[i]->role);
			envdb_cli_table_rowf(t, "member", line);
		}
		rc = envdb_cli_table_print(cli, t);
		goto out;
	}
	rc = EX_OK;
out:
	envdb_member_list_free(mem, n_mem);
	envdb_credential_list_free(creds, n_creds);
	envdb_database_free(db);
	envdb_environment_free(env);
	envdb_close(ctx);
	return rc;
}

/* Whether the adapter of the environment's database (NULL: none) locks
 * credentials out at the backend on archive (ENVDB_ADAPTER_CAP_SUSPEND). */
static bool can_lock_out(envdb_ctx *ctx, const envdb_database *db)
{
	size_t i;

	for (i = 0; db != NULL && i < envdb_plugin_count(ctx); i++) {
		envdb_plugin_info info = {.struct_size = sizeof(info)};

		if (envdb_plugin_get(&info, ctx, i) == ENVDB_OK &&
		    info.kind == ENVDB_PLUGIN_ADAPTER && strcmp(info.name, db->driver) == 0)
			return (info.capabilities & ENVDB_ADAPTER_CAP_SUSPEND) != 0;
	}
	return false;
}

/* Shared shape of the commands that act on one ORG/SLUG and print a line. */
static int env_action(envdb_cli *cli, int argc, char **argv, const char *verb)
{
	bool now = false, yes = false, locked;
	envdb_cli_opt delete_opts[] = {
		{"now", ENVDB_CLI_FLAG, &now},
		{"yes", ENVDB_CLI_FLAG, &yes},
		{NULL, 0, NULL},
	};
	envdb_cli_opt archive_opts[] = {
		{"yes", ENVDB_CLI_FLAG, &yes},
		{NULL, 0, NULL},
	};
	envdb_cli_env_ref ref;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	envdb_environment *env = NULL;
	envdb_database *db = NULL;
	int rc;

	rc = envdb_cli_env_begin(cli, argc, argv,
				 strcmp(verb, "delete") == 0    ? delete_opts
				 : strcmp(verb, "archive") == 0 ? archive_opts
								: NULL,
				 &pos, 1, 1, &ref, &ctx);
	if (rc != EX_OK)
		return rc;
	if (yes && strcmp(verb, "delete") == 0 && !now) {
		envdb_close(ctx);
		return envdb_cli_usage(cli, "--yes goes with --now (a delete with the grace period "
					    "asks nothing)");
	}
	/* Destructive and not undoable (delete --now), or taking an
	 * organization's default out of service (archive): asked first.  A
	 * refusal changes nothing. */
	if ((strcmp(verb, "delete") == 0 && now) || strcmp(verb, "archive") == 0) {
		if ((rc = envdb_env_get(&env, ctx, ref.org, ref.slug)) != ENVDB_OK) {
			rc = envdb_cli_fail(cli, rc);
			goto out;
		}
		if (now)
			rc = envdb_cli_confirm(cli, yes,
					       "delete environment %s/%s and drop its database",
					       ref.org, ref.slug);
		else if (env->is_default && strcmp(env->status, "active") == 0)
			rc = envdb_cli_confirm(cli, yes,
					       "archive environment %s/%s, the default of "
					       "organization %s",
					       ref.org, ref.slug, ref.org);
		envdb_environment_free(env);
		env = NULL;
		if (rc != EX_OK)
			goto out;
	}
	if (strcmp(verb, "archive") == 0)
		rc = envdb_env_archive(ctx, ref.org, ref.slug);
	else if (strcmp(verb, "unarchive") == 0)
		rc = envdb_env_unarchive(ctx, ref.org, ref.slug);
	else
		rc = envdb_env_delete(ctx, ref.org, ref.slug, now ? ENVDB_DELETE_NOW : 0);
	if (rc != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto out;
	}
	(void)envdb_env_get(&env, ctx, ref.org, ref.slug);
	(void)envdb_env_database(&db, ctx, ref.org, ref.slug);
	envdb_error_clear();
	locked = can_lock_out(ctx, db);
	if (env != NULL && db != NULL && strcmp(verb, "unarchive") != 0 && !locked)
		envdb_cli_error(cli,
				"warning: driver %s cannot lock credentials out at the backend: "
				"they keep working there until the database is dropped",
				db->driver);
	if (cli->json) {
		json_t *doc =
			json_pack("{s:s, s:s, s:s, s:o}", "ref", pos.v[0], "action", verb, "result",
				  env == NULL                          ? "deleted"
				  : env->delete_after                  ? "pending deletion"
				  : strcmp(env->status, "active") == 0 ? "active"
								       : "archived",
				  "environment", envdb_cli_env_json(env));

		if (env != NULL && db != NULL && strcmp(verb, "unarchive") != 0)
			json_object_set_new(doc, "credentials_locked_out", json_boolean(locked));
		if (doc != NULL && env != NULL && strcmp(verb, "archive") == 0)
			json_object_set_new(doc, "undo",
					    json_sprintf("envdb env unarchive %s", pos.v[0]));
		rc = envdb_cli_json_print(cli, doc);
	} else if (cli->quiet) {
		rc = EX_OK;
	} else if (cli->output == ENVDB_CLI_OUT_TSV) {
		envdb_cli_table *t = envdb_cli_env_table();

		if (env != NULL)
			envdb_cli_env_row(t, env);
		rc = envdb_cli_table_print(cli, t);
	} else if (strcmp(verb, "unarchive") == 0) {
		envdb_cli_print(cli, "unarchived %s (active again)\n", pos.v[0]);
		rc = EX_OK;
	} else {
		char t[32];

		if (env == NULL)
			envdb_cli_print(cli, "deleted %s (database dropped)\n", pos.v[0]);
		else if (env->delete_after)
			envdb_cli_print(cli,
					"archived %s; its database is dropped after %s "
					"(envdb reconcile --apply)\n",
					pos.v[0],
					envdb_cli_time_text(t, sizeof(t), env->delete_after));
		else
			envdb_cli_print(cli,
					"archived %s (database kept; undo: envdb env unarchive "
					"%s)\n",
					pos.v[0], pos.v[0]);
		rc = EX_OK;
	}
out:
	envdb_database_free(db);
	envdb_environment_free(env);
	envdb_close(ctx);
	return rc;
}

int envdb_cli_env_archive(envdb_cli *cli, int argc, char **argv)
{
	return env_action(cli, argc, argv, "archive");
}

int envdb_cli_env_unarchive(envdb_cli *cli, int argc, char **argv)
{
	return env_action(cli, argc, argv, "unarchive");
}

int envdb_cli_env_delete(envdb_cli *cli, int argc, char **argv)
{
	return env_action(cli, argc, argv, "delete");
}

/* ------------------------------------------------------------------------ */
/* cred rotate, complete, list, revoke                                       */
/* ------------------------------------------------------------------------ */

static int print_creds(envdb_cli *cli, envdb_ctx *ctx, const envdb_cli_env_ref *ref,
		       const char *what, json_t *extra)
{
	envdb_credential **v = NULL;
	size_t n = 0, i;
	int rc;

	rc = envdb_cred_list(&v, &n, ctx, ref->org, ref->slug);
	if (rc != ENVDB_OK) {
		json_decref(extra);
		return envdb_cli_fail(cli, rc);
	}
	if (cli->json) {
		json_t *arr = json_array();
		json_t *doc = extra ? extra : json_object();
		envdb_environment *env = NULL;

		(void)envdb_env_get(&env, ctx, ref->org, ref->slug);
		envdb_error_clear();
		for (i = 0; i < n; i++)
			json_array_append_new(arr, envdb_cli_cred_json(v[i]));
		json_object_set_new(doc, "environment", envdb_cli_env_json(env));
		json_object_set_new(doc, "credentials", arr);
		envdb_environment_free(env);
		rc = envdb_cli_json_print(cli, doc);
	} else if (cli->quiet && what != NULL) {
		json_decref(extra); /* an action: nothing on success */
		rc = EX_OK;
	} else {
		envdb_cli_table *t = envdb_cli_cred_table();

		json_decref(extra);
		if (what != NULL)
			envdb_cli_note(cli, "%s\n", what);
		for (i = 0; i < n; i++)
			envdb_cli_cred_row(t, v[i]);
		rc = envdb_cli_table_print(cli, t);
	}
	envdb_credential_list_free(v, n);
	return rc;
}

/* The capabilities of the adapter plugin `driver`; `unknown` when no
 * loaded adapter has that name. */
static uint64_t driver_caps(envdb_ctx *ctx, const char *driver, uint64_t unknown)
{
	size_t i, n = envdb_plugin_count(ctx);

	for (i = 0; driver != NULL && i < n; i++) {
		envdb_plugin_info pi = {.struct_size = sizeof(pi)};

		if (envdb_plugin_get(&pi, ctx, i) == ENVDB_OK && pi.kind == ENVDB_PLUGIN_ADAPTER &&
		    strcmp(pi.name, driver) == 0)
			return pi.capabilities;
	}
	return unknown;
}

/* Can the adapter plugin `driver` revoke one credential at its backend
 * (ENVDB_ADAPTER_CAP_REVOKE)?  Unknown drivers count as able: nothing to
 * warn about that the loader did not already say. */
static bool driver_revokes(envdb_ctx *ctx, const char *driver)
{
	return (driver_caps(ctx, driver, ENVDB_ADAPTER_CAP_REVOKE) & ENVDB_ADAPTER_CAP_REVOKE) != 0;
}

/* The warning for a credential envdb marked revoked that its backend still
 * accepts: Turso revokes group-wide only, so the plugin never does it;
 * sqlite checks no token at all (no ENVDB_ADAPTER_CAP_AUTHENTICATES), so
 * nothing expires or invalidates it there. */
static void warn_not_revoked(envdb_cli *cli, envdb_ctx *ctx, json_t *warnings,
			     const char *cred_id, const char *driver)
{
	char msg[512];

	if (!(driver_caps(ctx, driver, ENVDB_ADAPTER_CAP_AUTHENTICATES) &
	      ENVDB_ADAPTER_CAP_AUTHENTICATES))
		snprintf(msg, sizeof(msg),
			 "credential %s is marked revoked in envdb; the %s adapter checks no "
			 "credential, so it never limited access to the database and revoking it "
			 "changes nothing there",
			 cred_id, driver);
	else
		snprintf(msg, sizeof(msg),
			 "credential %s is marked revoked in envdb but the %s adapter cannot revoke "
			 "a single token: it keeps working until it expires or the group's tokens "
			 "are invalidated",
			 cred_id, driver);
	envdb_cli_error(cli, "warning: %s", msg);
	if (warnings != NULL)
		json_array_append_new(warnings, json_string(msg));
}

/* The credential ids of ORG/SLUG that are not "revoked", before an
 * operation (NULL-terminated, malloc'd; NULL on failure: no warnings). */
static char **unrevoked_ids(envdb_ctx *ctx, const envdb_cli_env_ref *ref)
{
	envdb_credential **v = NULL;
	size_t n = 0, i, k = 0;
	char **ids = NULL;

	if (envdb_cred_list(&v, &n, ctx, ref->org, ref->slug) != ENVDB_OK)
		return NULL;
	ids = calloc(n + 1, sizeof(*ids));
	for (i = 0; ids != NULL && i < n; i++)
		if (strcmp(v[i]->status, "revoked") != 0 && (ids[k] = strdup(v[i]->id)) != NULL)
			k++;
	envdb_credential_list_free(v, n);
	return ids;
}

/* After an operation that revoked credentials: when the adapter cannot
 * revoke at its backend, warn about each credential revoked since `before`
 * and say so in the JSON document (revoked_at_backend, warnings). */
static void report_local_revocations(envdb_cli *cli, envdb_ctx *ctx,
				     const envdb_cli_env_ref *ref, char **before, json_t *doc)
{
	envdb_database *db = NULL;
	envdb_credential **v = NULL;
	size_t n = 0, i, k;
	json_t *warnings = json_array();
	bool revokes;

	if (envdb_env_database(&db, ctx, ref->org, ref->slug) != ENVDB_OK)
		goto out;
	revokes = driver_revokes(ctx, db->driver);
	if (doc != NULL)
		json_object_set_new(doc, "revoked_at_backend", json_boolean(revokes));
	if (revokes || before == NULL || envdb_cred_list(&v, &n, ctx, ref->org, ref->slug))
		goto out;
	for (i = 0; i < n; i++) {
		if (strcmp(v[i]->status, "revoked") != 0)
			continue;
		for (k = 0; before[k] != NULL; k++)
			if (strcmp(before[k], v[i]->id) == 0)
				warn_not_revoked(cli, ctx, warnings, v[i]->id, db->driver);
	}
out:
	if (doc != NULL && json_array_size(warnings) > 0)
		json_object_set(doc, "warnings", warnings);
	json_decref(warnings);
	envdb_credential_list_free(v, n);
	envdb_database_free(db);
}

static void ids_free(char **ids)
{
	for (size_t i = 0; ids != NULL && ids[i] != NULL; i++)
		free(ids[i]);
	free(ids);
}

int envdb_cli_cred_rotate(envdb_cli *cli, int argc, char **argv)
{
	envdb_rotate_opts ro = ENVDB_ROTATE_OPTS_INIT;
	const char *auth = NULL;
	envdb_cli_opt opts[] = {
		{"overlap", ENVDB_CLI_DURATION, &ro.overlap_seconds},
		{"expires", ENVDB_CLI_DURATION, &ro.expires_in_seconds},
		{"authorization", ENVDB_CLI_STRING, &auth},
		{NULL, 0, NULL},
	};
	envdb_cli_env_ref ref;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	char msg[640], **before = NULL;
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, opts, &pos, 1, 1)) != EX_OK)
		return rc;
	if ((rc = envdb_cli_env_ref_parse(cli, &ref, pos.v[0])) != EX_OK)
		return rc;
	ro.authorization = auth;
	if ((rc = envdb_cli_open(cli, &ctx, 0)) != EX_OK)
		return rc;
	before = unrevoked_ids(ctx, &ref);
	rc = envdb_cred_rotate(ctx, ref.org, ref.slug, &ro);
	if (rc != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
	} else {
		json_t *doc = json_pack("{s:s}", "action", "rotate");

		report_local_revocations(cli, ctx, &ref, before, doc);
		snprintf(msg, sizeof(msg), "rotated %s/%s", ref.org, ref.slug);
		rc = print_creds(cli, ctx, &ref, msg, doc);
	}
	ids_free(before);
	envdb_close(ctx);
	return rc;
}

int envdb_cli_cred_mint(envdb_cli *cli, int argc, char **argv)
{
	const char *auth = NULL;
	int64_t lifetime = 0;
	envdb_cli_opt opts[] = {
		{"expires", ENVDB_CLI_DURATION, &lifetime},
		{"authorization", ENVDB_CLI_STRING, &auth},
		{NULL, 0, NULL},
	};
	envdb_cli_env_ref ref;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	char msg[700], id[37];
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, opts, &pos, 1, 1)) != EX_OK)
		return rc;
	if ((rc = envdb_cli_env_ref_parse(cli, &ref, pos.v[0])) != EX_OK)
		return rc;
	if (auth == NULL)
		return envdb_cli_usage(cli, "cred mint: --authorization full_access|read_only is "
					    "required");
	if ((rc = envdb_cli_open(cli, &ctx, 0)) != EX_OK)
		return rc;
	rc = envdb_cred_mint(id, ctx, ref.org, ref.slug, auth, lifetime);
	if (rc != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
	} else if (envdb_cli_quiet_id(cli, id)) {
		rc = EX_OK; /* --quiet: the id of what was minted */
	} else {
		snprintf(msg, sizeof(msg), "minted %s credential %s for %s/%s", auth, id, ref.org,
			 ref.slug);
		rc = print_creds(cli, ctx, &ref, msg,
				 json_pack("{s:s, s:s}", "action", "mint", "credential_id", id));
	}
	envdb_close(ctx);
	return rc;
}

int envdb_cli_cred_complete(envdb_cli *cli, int argc, char **argv)
{
	envdb_cli_env_ref ref;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	size_t revoked = 0;
	char msg[640], **before = NULL;
	int rc;

	if ((rc = envdb_cli_env_begin(cli, argc, argv, NULL, &pos, 1, 1, &ref, &ctx)) !=
	    EX_OK)
		return rc;
	before = unrevoked_ids(ctx, &ref);
	rc = envdb_cred_complete(&revoked, ctx, ref.org, ref.slug);
	if (rc != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
	} else {
		json_t *doc = json_pack("{s:s, s:I}", "action", "complete", "revoked",
					(json_int_t)revoked);

		report_local_revocations(cli, ctx, &ref, before, doc);
		snprintf(msg, sizeof(msg), "completed rotation of %s/%s: %zu credential%s revoked",
			 ref.org, ref.slug, revoked, revoked == 1 ? "" : "s");
		rc = print_creds(cli, ctx, &ref, msg, doc);
	}
	ids_free(before);
	envdb_close(ctx);
	return rc;
}

int envdb_cli_cred_list(envdb_cli *cli, int argc, char **argv)
{
	envdb_cli_env_ref ref;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	int rc;

	if ((rc = envdb_cli_env_begin(cli, argc, argv, NULL, &pos, 1, 1, &ref, &ctx)) !=
	    EX_OK)
		return rc;
	rc = print_creds(cli, ctx, &ref, NULL, NULL);
	envdb_close(ctx);
	return rc;
}

int envdb_cli_cred_revoke(envdb_cli *cli, int argc, char **argv)
{
	envdb_cli_env_ref ref;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	char msg[640];
	int rc;

	if ((rc = envdb_cli_env_begin(cli, argc, argv, NULL, &pos, 2, 2, &ref, &ctx)) !=
	    EX_OK)
		return rc;
	rc = envdb_cred_revoke(ctx, ref.org, ref.slug, pos.v[1]);
	if (rc != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
	} else {
		snprintf(msg, sizeof(msg), "revoked credential %s", pos.v[1]);
		rc = print_creds(cli, ctx, &ref, msg, json_pack("{s:s}", "action", "revoke"));
	}
	envdb_close(ctx);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* resolve                                                                   */
/* ------------------------------------------------------------------------ */

int envdb_cli_resolve(envdb_cli *cli, int argc, char **argv)
{
	const char *user = NULL;
	bool reveal = false;
	envdb_cli_opt opts[] = {
		{"user", ENVDB_CLI_STRING, &user},
		{"reveal", ENVDB_CLI_FLAG, &reveal},
		{NULL, 0, NULL},
	};
	envdb_connection *conn = NULL;
	envdb_cli_env_ref ref;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	char t[32];
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, opts, &pos, 1, 1)) != EX_OK)
		return rc;
	if ((rc = envdb_cli_env_ref_parse(cli, &ref, pos.v[0])) != EX_OK)
		return rc;
	if (user == NULL && (user = login_name()) == NULL)
		return envdb_cli_usage(cli, "--user USER is required");
	if ((rc = envdb_cli_open(cli, &ctx, 0)) != EX_OK)
		return rc;
	rc = envdb_resolve(&conn, ctx, ref.org, ref.slug, user);
	if (rc != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto out;
	}
	if (cli->json) {
		envdb_environment *env = NULL;
		json_t *doc;

		(void)envdb_env_get(&env, ctx, ref.org, ref.slug);
		envdb_error_clear();
		doc = json_pack("{s:o, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "environment",
				envdb_cli_env_json(env), "user_id", user, "role", conn->role,
				"driver", conn->driver, "database_name", conn->database_name,
				"database_url", conn->database_url, "authorization",
				conn->authorization, "credential_id", conn->credential_id, "handle",
				conn->credential_handle, "expires_at",
				envdb_cli_time_json(conn->expires_at));
		envdb_environment_free(env);
		if (doc != NULL) {
			json_t *prev = json_null();

			if (reveal)
				json_object_set_new(doc, "secret",
						    json_stringn(conn->secret, conn->secret_len));
			if (conn->previous_credential_id != NULL) {
				prev = json_pack("{s:s, s:s, s:o}", "credential_id",
						 conn->previous_credential_id, "handle",
						 conn->previous_credential_handle, "expires_at",
						 envdb_cli_time_json(conn->previous_expires_at));
				if (prev != NULL && reveal)
					json_object_set_new(
						prev, "secret",
						json_stringn(conn->previous_secret,
							     conn->previous_secret_len));
			}
			json_object_set_new(doc, "previous", prev);
		}
		rc = envdb_cli_json_print(cli, doc);
		goto out;
	}
	/* --quiet: the one thing a script asks resolve for (with --reveal, the
	 * secret; else the URL) */
	if (envdb_cli_quiet_id(cli, reveal ? conn->secret : conn->database_url)) {
		rc = EX_OK;
		goto out;
	}
	{
		envdb_cli_table *tb = envdb_cli_field_table();
		char line[1024];

		snprintf(line, sizeof(line), "%s (%s)", pos.v[0], conn->environment_id);
		envdb_cli_table_rowf(tb, "environment", line);
		snprintf(line, sizeof(line), "%s (%s)", user, conn->role);
		envdb_cli_table_rowf(tb, "user", line);
		envdb_cli_table_rowf(tb, "driver", conn->driver);
		envdb_cli_table_rowf(tb, "database", conn->database_name);
		envdb_cli_table_rowf(tb, "url", conn->database_url);
		envdb_cli_table_rowf(tb, "authorization", conn->authorization);
		/* The handle is the user name a client logs in as (postgres: the
		 * role); "user" above is the envdb member.  A handle that is a URL
		 * query (sqlite's "?mode=ro") is already part of the url above. */
		if (conn->credential_handle[0] != '\0' && conn->credential_handle[0] != '?')
			envdb_cli_table_rowf(tb, "db user", conn->credential_handle);
		snprintf(line, sizeof(line), "%s (expires %s)", conn->credential_id,
			 envdb_cli_time_text(t, sizeof(t), conn->expires_at));
		envdb_cli_table_rowf(tb, "credential", line);
		envdb_cli_table_rowf(tb, "secret",
				     reveal ? conn->secret : "(hidden; --reveal prints it)");
		if (conn->previous_credential_id != NULL) {
			snprintf(line, sizeof(line), "%s (rotating until %s)",
				 conn->previous_credential_id,
				 envdb_cli_time_text(t, sizeof(t), conn->previous_expires_at));
			envdb_cli_table_rowf(tb, "previous", line);
			if (conn->previous_credential_handle[0] != '\0' &&
			    conn->previous_credential_handle[0] != '?')
				envdb_cli_table_rowf(tb, "previous user",
						     conn->previous_credential_handle);
			if (reveal)
				envdb_cli_table_rowf(tb, "previous secret", conn->previous_secret);
		}
		rc = envdb_cli_table_print(cli, tb);
		goto out;
	}
	rc = EX_OK;
out:
	envdb_connection_free(conn);
	envdb_close(ctx);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* reconcile, key rewrap                                                     */
/* ------------------------------------------------------------------------ */

/* Every environment, sorted by ORG/SLUG, to find the object of a report
 * item by its label in O(log n) (a report can name every environment). */
typedef struct env_index {
	envdb_environment **v;
	size_t n;
} env_index;

static int env_ref_cmp(const envdb_environment *e, const char *ref)
{
	char own[400];

	snprintf(own, sizeof(own), "%s/%s", e->organization_id, e->slug);
	return strcmp(own, ref);
}

static int env_sort_cmp(const void *a, const void *b)
{
	const envdb_environment *y = *(envdb_environment *const *)b;
	char ref[400];

	snprintf(ref, sizeof(ref), "%s/%s", y->organization_id, y->slug);
	return env_ref_cmp(*(envdb_environment *const *)a, ref);
}

static void env_index_build(env_index *x, envdb_ctx *ctx)
{
	x->v = NULL;
	x->n = 0;
	if (envdb_env_list(&x->v, &x->n, ctx, NULL) != ENVDB_OK) {
		x->v = NULL;
		x->n = 0;
		envdb_error_clear();
		return;
	}
	qsort(x->v, x->n, sizeof(*x->v), env_sort_cmp);
}

static const envdb_environment *env_index_find(const env_index *x, const char *ref)
{
	size_t lo = 0, hi = x->n;

	while (ref != NULL && lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = env_ref_cmp(x->v[mid], ref);

		if (c == 0)
			return x->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void env_index_free(env_index *x)
{
	envdb_environment_list_free(x->v, x->n);
}

int envdb_cli_reconcile(envdb_cli *cli, int argc, char **argv)
{
	bool apply = false, force = false;
	envdb_cli_opt opts[] = {
		{"apply", ENVDB_CLI_FLAG, &apply},
		{"force", ENVDB_CLI_FLAG, &force},
		{NULL, 0, NULL},
	};
	envdb_reconcile_report *r = NULL;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	int first_failed = ENVDB_OK;
	size_t i, n_unverified = 0;
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, opts, &pos, 0, 0)) != EX_OK)
		return rc;
	if (force && !apply)
		return envdb_cli_usage(cli, "reconcile: --force goes with --apply");
	if ((rc = envdb_cli_open(cli, &ctx, 0)) != EX_OK)
		return rc;
	rc = envdb_reconcile(&r, ctx,
			     (apply ? ENVDB_RECONCILE_APPLY : 0) | (force ? ENVDB_RECONCILE_FORCE : 0));
	if (rc != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto out;
	}
	for (i = 0; i < r->n_items && first_failed == ENVDB_OK; i++)
		first_failed = r->items[i].status;
	if (cli->json) {
		json_t *arr = json_array();
		env_index idx;

		env_index_build(&idx, ctx);
		for (i = 0; i < r->n_items; i++) {
			const envdb_reconcile_item *it = &r->items[i];
			json_t *o = json_pack("{s:s, s:s}", "kind", it->kind, "action", it->action);

			json_object_set_new(o, "driver", envdb_cli_str_json(it->driver));
			json_object_set_new(o, "database_name",
					    envdb_cli_str_json(it->database_name));
			json_object_set_new(o, "object_id", envdb_cli_str_json(it->object_id));
			json_object_set_new(o, "ref", envdb_cli_str_json(it->label));
			json_object_set_new(o, "environment",
					    envdb_cli_env_json(env_index_find(&idx, it->label)));
			if (strcmp(it->kind, "rotation") == 0 && it->status == ENVDB_OK)
				json_object_set_new(o, "revoked_at_backend",
						    json_boolean(driver_revokes(ctx, it->driver)));
			if (it->status != ENVDB_OK) {
				json_object_set_new(o, "status", json_string(envdb_status_str(it->status)));
				json_object_set_new(o, "message", envdb_cli_str_json(it->message));
			}
			json_array_append_new(arr, o);
		}
		env_index_free(&idx);
		rc = envdb_cli_json_print(cli, json_pack("{s:b, s:o, s:I}", "applied", r->applied,
							 "items", arr, "failed",
							 (json_int_t)r->n_failed));
	} else {
		static const char *const h[] = {"KIND",   "ACTION", "ENVIRONMENT", "DATABASE",
						"DRIVER", "OBJECT", NULL};
		envdb_cli_table *t = envdb_cli_table_new(5, h);

		for (i = 0; i < r->n_items; i++) {
			const envdb_reconcile_item *it = &r->items[i];

			/* One line per migrated database on every run would bury
			 * what needs attention: counted below, listed by --json. */
			if (strcmp(it->kind, "unverified") == 0 && it->status == ENVDB_OK) {
				n_unverified++;
				continue;
			}
			envdb_cli_table_rowf(t, it->kind, it->action, it->label, it->database_name,
					     it->driver, it->object_id);
			if (it->status != ENVDB_OK)
				envdb_cli_error(cli, "%s: %s", it->kind, it->message ? it->message : "");
		}
		envdb_cli_table_print(cli, t);
	}
	/* Revocations the backend does not enforce: said on stderr either way. */
	for (i = 0; i < r->n_items; i++) {
		const envdb_reconcile_item *it = &r->items[i];

		if (strcmp(it->kind, "rotation") == 0 && it->status == ENVDB_OK && r->applied &&
		    !driver_revokes(ctx, it->driver))
			warn_not_revoked(cli, ctx, NULL, it->object_id, it->driver);
	}
	if (!cli->json) {
		if (r->n_items == n_unverified)
			envdb_cli_note(cli, "nothing to reconcile\n");
		else if (!r->applied)
			envdb_cli_note(cli, "(dry run: nothing changed; --apply acts)\n");
		if (n_unverified > 0)
			envdb_cli_note(cli,
				       "%zu adopted database(s) not verified (kept their v4 name "
				       "and location, so their adapter does not list them; "
				       "--json lists them)\n",
				       n_unverified);
		rc = EX_OK;
	}
	if (r->n_failed > 0) {
		rc = envdb_cli_fail_msg(cli, first_failed,
					"reconcile: %zu of %zu items need attention", r->n_failed,
					r->n_items);
	} else if (!r->applied && rc == EX_OK) {
		/* A dry run that found work: a script must not read "all is
		 * well" from it (envdb(1), EXIT STATUS: 1). */
		size_t n_todo = 0;

		for (i = 0; i < r->n_items; i++)
			if (strncmp(r->items[i].action, "would ", 6) == 0)
				n_todo++;
		if (n_todo > 0) {
			envdb_cli_error(cli, "reconcile: %zu item(s) need attention (dry run; "
					     "--apply acts)",
					n_todo);
			rc = ENVDB_CLI_EX_PENDING;
		}
	}
out:
	envdb_reconcile_report_free(r);
	envdb_close(ctx);
	return rc;
}

static void on_rewrap_progress(void *cb_ctx, size_t done, size_t total)
{
	envdb_cli_progress *p = cb_ctx;

	envdb_cli_progress_update(p, "rewrap", done, total, "credentials", "credential", NULL, -1);
}

int envdb_cli_key_rewrap(envdb_cli *cli, int argc, char **argv)
{
	bool dry = false;
	envdb_cli_opt opts[] = {
		{"dry-run", ENVDB_CLI_FLAG, &dry},
		{NULL, 0, NULL},
	};
	envdb_rewrap_report rep = ENVDB_REWRAP_REPORT_INIT;
	envdb_cli_progress prog;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	int rc, ex;

	if ((rc = envdb_cli_parse(cli, argc, argv, opts, &pos, 0, 0)) != EX_OK)
		return rc;
	if ((rc = envdb_cli_open(cli, &ctx, 0)) != EX_OK)
		return rc;
	envdb_cli_progress_begin(&prog);
	rc = envdb_key_rewrap_progress(&rep, ctx, dry ? ENVDB_REWRAP_DRY_RUN : 0,
				       prog.enabled ? on_rewrap_progress : NULL, &prog);
	envdb_cli_progress_end(&prog);
	if (cli->json && (rc == ENVDB_OK || rep.total > 0)) {
		json_t *doc = json_pack("{s:b, s:I, s:I, s:I, s:I}", "dry_run", dry, "total",
					(json_int_t)rep.total, "already_current",
					(json_int_t)rep.already_current, dry ? "would_rewrap" : "rewrapped",
					(json_int_t)rep.rewrapped, "failed", (json_int_t)rep.failed);

		if (rc != ENVDB_OK && doc != NULL)
			json_object_set_new(doc, "error",
					    envdb_cli_error_json(envdb_cli_error_code(rc),
								 envdb_cli_exit_status(rc), rc,
								 envdb_error_last()->message,
								 envdb_error_last()->native_code));
		ex = envdb_cli_json_print(cli, doc);
	} else {
		envdb_cli_print(cli, "%s: %zu credentials, %zu already under the current key, %zu %s, "
				     "%zu failed\n",
				dry ? "rewrap (dry run)" : "rewrap", rep.total, rep.already_current,
				rep.rewrapped, dry ? "would be rewrapped" : "rewrapped", rep.failed);
		ex = EX_OK;
	}
	if (rc != ENVDB_OK)
		ex = envdb_cli_fail(cli, rc);
	envdb_close(ctx);
	return ex;
}
