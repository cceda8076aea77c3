/*
 * core/cli_migrate.c — `envdb migrate v4-to-v5`: runs the v4 → v5
 * migration (envdb_migrate_v4_to_v5, core/MIGRATION.md), shows progress on
 * a terminal and prints the report.
 *
 *   envdb migrate v4-to-v5 [--dry-run] [--batch N] [--legacy-encryptor NAME]
 *                          [--by USER]
 *
 * Output: text totals plus one line per organization that is not migrated
 * (conflict, failed, skipped); with --json one document with the totals and
 * one entry per organization the run looked at.  Progress (organizations
 * done, rate, ETA) goes to stderr only when stderr is a terminal.
 * Exit: 0 when every organization is migrated (or already was), 65 when
 * some conflict or failure remains, the status of the error otherwise.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* Progress on a terminal, at most every 200 ms. */
typedef struct progress_state {
	int64_t last_ms;
	bool shown;
	bool dry_run;
} progress_state;

static void fmt_duration(char *buf, size_t cap, double seconds)
{
	long s = seconds < 0 ? 0 : (long)(seconds + 0.5);

	if (s >= 3600)
		snprintf(buf, cap, "%ldh%02ldm", s / 3600, (s / 60) % 60);
	else if (s >= 60)
		snprintf(buf, cap, "%ldm%02lds", s / 60, s % 60);
	else
		snprintf(buf, cap, "%lds", s);
}

static void on_progress(void *cb_ctx, const envdb_migrate_progress *p)
{
	progress_state *ps = cb_ctx;
	double secs = (double)p->elapsed_ms / 1000.0;
	double rate = secs > 0 ? (double)p->orgs_done / secs : 0;
	char eta[32] = "?";

	if (p->orgs_done < p->orgs_total && p->elapsed_ms - ps->last_ms < 200)
		return;
	ps->last_ms = p->elapsed_ms;
	if (rate > 0)
		fmt_duration(eta, sizeof(eta), (double)(p->orgs_total - p->orgs_done) / rate);
	fprintf(stderr,
		"\r\033[Kmigrate%s: %zu/%zu organizations (%.0f%%), %zu rows, %.0f org/s, ETA %s",
		ps->dry_run ? " (dry run)" : "", p->orgs_done, p->orgs_total,
		p->orgs_total ? 100.0 * (double)p->orgs_done / (double)p->orgs_total : 100.0,
		p->rows_done, rate, eta);
	fflush(stderr);
	ps->shown = true;
}

static json_t *org_json(const envdb_migrate_org *o)
{
	json_t *jo = json_pack("{s:s, s:s}", "organization_id", o->organization_id, "outcome",
			       envdb_migrate_outcome_str(o->outcome));
	size_t i;

	if (jo == NULL)
		return NULL;
	if (o->reason != NULL)
		json_object_set_new(jo, "reason", json_string(o->reason));
	if (o->n_envs > 0) {
		json_t *envs = json_array();

		for (i = 0; i < o->n_envs; i++) {
			const envdb_migrate_env *e = &o->envs[i];
			json_t *je = json_pack("{s:s, s:b, s:s, s:s, s:s, s:I}", "slug", e->slug,
					       "default", e->is_default, "legacy_id", e->legacy_id,
					       "database_name", e->database_name, "driver",
					       e->driver, "packages_repointed",
					       (json_int_t)e->packages_repointed);

			if (je != NULL && e->environment_id != NULL)
				json_object_set_new(je, "environment_id",
						    json_string(e->environment_id));
			json_array_append_new(envs, je);
		}
		json_object_set_new(jo, "environments", envs);
	}
	if (o->rows_left > 0)
		json_object_set_new(jo, "legacy_rows_left", json_integer((json_int_t)o->rows_left));
	return jo;
}

static json_t *report_json(const envdb_migrate_report *r)
{
	json_t *orgs = json_array(), *doc;
	size_t i;

	for (i = 0; i < r->n_orgs; i++)
		json_array_append_new(orgs, org_json(&r->orgs[i]));
	doc = json_pack("{s:b, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:I, s:o}", "dry_run",
			r->dry_run, "totals", "organizations", (json_int_t)r->organizations,
			"migrated", (json_int_t)r->migrated, "already", (json_int_t)r->already,
			"conflicts", (json_int_t)r->conflicts, "failed", (json_int_t)r->failed,
			"skipped", (json_int_t)r->skipped, "rows_migrated",
			(json_int_t)r->rows_migrated, "packages_repointed",
			(json_int_t)r->packages_repointed, "elapsed_ms", (json_int_t)r->elapsed_ms,
			"organizations", orgs);
	if (doc != NULL && r->stopped_status != 0)
		json_object_set_new(doc, "stopped",
				    json_pack("{s:s, s:s}", "status",
					      envdb_status_str(r->stopped_status), "message",
					      r->stopped_message ? r->stopped_message : ""));
	return doc;
}

static void report_text(envdb_cli *cli, const envdb_migrate_report *r)
{
	size_t i;

	envdb_cli_print(cli,
			"migrate v4-to-v5%s: %zu organizations: %zu %s, %zu already migrated, "
			"%zu conflicts, %zu failed, %zu skipped; %zu legacy rows %s, "
			"%zu package installations %s (%.1f s)\n",
			r->dry_run ? " (dry run)" : "", r->organizations, r->migrated,
			r->dry_run ? "would be migrated" : "migrated", r->already, r->conflicts,
			r->failed, r->skipped, r->rows_migrated,
			r->dry_run ? "would become environments" : "became environments",
			r->packages_repointed, r->dry_run ? "would be repointed" : "repointed",
			(double)r->elapsed_ms / 1000.0);
	for (i = 0; i < r->n_orgs; i++) {
		const envdb_migrate_org *o = &r->orgs[i];

		if (o->outcome == ENVDB_MIGRATE_MIGRATED || o->outcome == ENVDB_MIGRATE_ALREADY)
			continue;
		envdb_cli_print(cli, "  %-8s %s: %s\n", envdb_migrate_outcome_str(o->outcome),
				o->organization_id, o->reason ? o->reason : "");
	}
}

int envdb_cli_migrate_v4_to_v5(envdb_cli *cli, int argc, char **argv)
{
	bool dry = false;
	const char *legacy = NULL, *by = NULL;
	int64_t batch = 0;
	envdb_cli_opt opts[] = {
		{"dry-run", ENVDB_CLI_FLAG, &dry},
		{"batch", ENVDB_CLI_INT, &batch},
		{"legacy-encryptor", ENVDB_CLI_STRING, &legacy},
		{"by", ENVDB_CLI_STRING, &by},
		{NULL, 0, NULL},
	};
	envdb_migrate_opts mo = ENVDB_MIGRATE_OPTS_INIT;
	envdb_migrate_report *rep = NULL;
	progress_state ps;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	int rc, ex;

	if ((rc = envdb_cli_parse(cli, argc, argv, opts, &pos, 0, 0)) != EX_OK)
		return rc;
	if (batch < 0 || batch > 1000000)
		return envdb_cli_usage(cli, "--batch: %lld is not between 1 and 1000000",
				       (long long)batch);
	if ((rc = envdb_cli_open(cli, &ctx, 0)) != EX_OK)
		return rc;
	memset(&ps, 0, sizeof(ps));
	ps.dry_run = dry;
	mo.dry_run = dry;
	mo.batch = (size_t)batch;
	mo.legacy_encryptor = legacy;
	mo.by = by;
	if (isatty(STDERR_FILENO)) {
		mo.progress = on_progress;
		mo.progress_ctx = &ps;
	}
	rc = envdb_migrate_v4_to_v5(&rep, ctx, &mo);
	if (ps.shown)
		fputc('\n', stderr);
	ex = EX_OK;
	if (rep != NULL) {
		if (cli->json)
			ex = envdb_cli_json_print(cli, report_json(rep));
		else
			report_text(cli, rep);
	}
	if (rc != ENVDB_OK) {
		ex = envdb_cli_fail(cli, rc);
	} else if (ex == EX_OK && (rep->conflicts > 0 || rep->failed > 0)) {
		envdb_cli_error(cli,
				"migrate v4-to-v5: %zu organization(s) not migrated (%zu conflicts, "
				"%zu failed): fix them and run again",
				rep->conflicts + rep->failed, rep->conflicts, rep->failed);
		ex = EX_DATAERR;
	}
	envdb_migrate_report_free(rep);
	envdb_close(ctx);
	return ex;
}
