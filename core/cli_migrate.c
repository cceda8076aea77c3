/*
 * core/cli_migrate.c — `envdb migrate v4-to-v5`: runs the v4 → v5
 * migration (envdb_migrate_v4_to_v5, core/MIGRATION.md), shows progress on
 * a terminal and prints the report.
 *
 *   envdb migrate v4-to-v5 [--dry-run] [--batch N] [--legacy-encryptor NAME|none]
 *                          [--by USER] [--map-org OLD=NEW]... [--map-org-file FILE]
 *   envdb migrate wipe-legacy-tokens [--dry-run]
 *
 * A dry run opens the control plane as a private snapshot
 * (ENVDB_OPEN_SNAPSHOT): the file, its -wal and its -shm stay byte-identical.
 * OLD in --map-org is the legacy organization id with any byte written as
 * \xNN (as the report prints it); NEW a valid v5 id.
 *
 * Output: text totals plus one line per organization that is not migrated
 * (conflict, failed, skipped); with --json one document with the totals and
 * one entry per organization the run looked at.  Progress (organizations
 * done, rate, ETA) goes to stderr only when stderr is a terminal.
 * Exit: 0 when every organization is migrated (or already was), 65 when
 * some conflict or failure remains, the status of the error otherwise.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* Progress on a terminal (envdb_cli_progress, shared with key rewrap). */
typedef struct progress_state {
	envdb_cli_progress p;
	bool dry_run;
} progress_state;

static void on_progress(void *cb_ctx, const envdb_migrate_progress *p)
{
	progress_state *ps = cb_ctx;
	char rows[64];

	snprintf(rows, sizeof(rows), "%zu rows", p->rows_done);
	envdb_cli_progress_update(&ps->p, ps->dry_run ? "migrate (dry run)" : "migrate",
				  p->orgs_done, p->orgs_total, "organizations", "org", rows,
				  p->elapsed_ms);
}

/* `s` with every byte that is not printable ASCII (and '\\') as \xNN, cut
 * to fit `cap`. */
static void quote_id(char *out, size_t cap, const char *s)
{
	size_t o = 0;

	for (; *s != '\0' && o + 5 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c >= 0x7f || c == '\\')
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
}

/* A JSON string of `s`, escaped as \xNN when it is not valid UTF-8. */
static json_t *jstr(const char *s)
{
	json_t *j = json_string(s);
	char q[1024];

	if (j != NULL)
		return j;
	quote_id(q, sizeof(q), s);
	return json_string(q);
}

static json_t *org_json(const envdb_migrate_org *o)
{
	json_t *jo = json_pack("{s:o, s:s}", "organization_id", jstr(o->organization_id), "outcome",
			       envdb_migrate_outcome_str(o->outcome));
	size_t i;

	if (jo == NULL)
		return NULL;
	if (o->mapped_to != NULL)
		json_object_set_new(jo, "mapped_to", json_string(o->mapped_to));
	if (o->reason != NULL)
		json_object_set_new(jo, "reason", json_string(o->reason));
	if (o->n_envs > 0) {
		json_t *envs = json_array();

		for (i = 0; i < o->n_envs; i++) {
			const envdb_migrate_env *e = &o->envs[i];
			json_t *je =
				json_pack("{s:s, s:b, s:s, s:s, s:s, s:I}", "slug", e->slug,
					  "is_default", e->is_default, "legacy_id", e->legacy_id,
					  "database_name", e->database_name, "driver", e->driver,
					  "packages_repointed", (json_int_t)e->packages_repointed);

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

static const char plaintext_warning[] =
	"legacy tokens were declared plaintext (--legacy-encryptor none): each was taken as it "
	"is and sealed under the current encryptor; they stay in clear on the archived legacy "
	"rows until `envdb migrate wipe-legacy-tokens`";

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
	if (doc != NULL) {
		json_t *w = json_array();

		json_object_set_new(json_object_get(doc, "totals"), "rows_plaintext",
				    json_integer((json_int_t)r->rows_plaintext));
		json_object_set_new(doc, "store",
				    json_pack("{s:I, s:I, s:I, s:I, s:I}", "organizations",
					      (json_int_t)r->organizations, "done",
					      (json_int_t)r->store_done, "done_by_this_run",
					      (json_int_t)r->migrated, "open",
					      (json_int_t)r->store_open, "inactive",
					      (json_int_t)r->store_inactive));
		if (r->rows_plaintext > 0)
			json_array_append_new(w, json_string(plaintext_warning));
		json_object_set_new(doc, "warnings", w);
	}
	if (doc != NULL && r->stopped_status != 0)
		json_object_set_new(doc, "stopped",
				    envdb_cli_error_json(envdb_cli_error_code(r->stopped_status),
							 envdb_cli_exit_status(r->stopped_status),
							 r->stopped_status, r->stopped_message,
							 NULL));
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
	envdb_cli_print(cli,
			"store%s: %zu of %zu organizations migrated (%zu by this run), %zu with "
			"legacy rows still to migrate, %zu with only archived/failed v4 rows\n",
			r->dry_run ? " (as the run would leave it)" : "", r->store_done,
			r->organizations, r->migrated, r->store_open, r->store_inactive);
	if (r->rows_plaintext > 0)
		envdb_cli_print(cli, "warning: %zu %s\n", r->rows_plaintext, plaintext_warning);
	for (i = 0; i < r->n_orgs; i++) {
		const envdb_migrate_org *o = &r->orgs[i];

		if (o->outcome == ENVDB_MIGRATE_MIGRATED || o->outcome == ENVDB_MIGRATE_ALREADY)
			continue;
		char q[256];

		quote_id(q, sizeof(q), o->organization_id);
		envdb_cli_print(cli, "  %-8s %s: %s\n", envdb_migrate_outcome_str(o->outcome), q,
				o->reason ? o->reason : "");
	}
}

/* OLD (\xNN escapes, "\\" a backslash) into a new string; NULL when bad. */
static char *unescape_id(const char *in, size_t len)
{
	char *out = malloc(len + 1);
	size_t i, o = 0;

	if (out == NULL)
		return NULL;
	for (i = 0; i < len; i++) {
		if (in[i] == '\\' && i + 1 < len && in[i + 1] == '\\') {
			out[o++] = '\\';
			i++;
		} else if (in[i] == '\\' && i + 3 < len + 0 && in[i + 1] == 'x') {
			char hex[3] = {in[i + 2], in[i + 3], '\0'}, *end;
			long v = strtol(hex, &end, 16);

			if (*end != '\0' || v <= 0) {
				free(out);
				return NULL;
			}
			out[o++] = (char)v;
			i += 3;
		} else {
			out[o++] = in[i];
		}
	}
	out[o] = '\0';
	return out;
}

typedef struct org_map {
	char **v; /* old, new, old, new ... (owned) */
	size_t n; /* pairs */
	size_t cap;
} org_map;

static void org_map_free(org_map *m)
{
	size_t i;

	for (i = 0; i < 2 * m->n; i++)
		free(m->v[i]);
	free(m->v);
}

/* Add "OLD=NEW" (split at the last '=': NEW cannot hold one). */
static int org_map_add(envdb_cli *cli, org_map *m, const char *spec, const char *where)
{
	const char *eq = strrchr(spec, '=');
	char *old_id, *new_id;

	if (eq == NULL || eq == spec || eq[1] == '\0')
		return envdb_cli_usage(cli, "%s: \"%s\" is not OLD=NEW", where, CLI_Q(spec));
	old_id = unescape_id(spec, (size_t)(eq - spec));
	new_id = strdup(eq + 1);
	if (old_id == NULL || new_id == NULL) {
		free(old_id);
		free(new_id);
		return envdb_cli_usage(cli, "%s: \"%s\": bad \\xNN escape in OLD", where,
				       CLI_Q(spec));
	}
	if (m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 8;
		char **v = realloc(m->v, 2 * cap * sizeof(*v));

		if (v == NULL) {
			free(old_id);
			free(new_id);
			return envdb_cli_fail_msg(cli, ENVDB_ERR_NOMEM, "out of memory");
		}
		m->v = v;
		m->cap = cap;
	}
	m->v[2 * m->n] = old_id;
	m->v[2 * m->n + 1] = new_id;
	m->n++;
	return EX_OK;
}

/* Lines "OLD=NEW"; blank lines and lines starting with '#' are ignored. */
static int org_map_file(envdb_cli *cli, org_map *m, const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, where[64];
	size_t cap = 0, no = 0;
	ssize_t len;
	int rc = EX_OK;

	if (f == NULL) {
		int e = errno;

		return envdb_cli_fail_msg(cli, ENVDB_ERR_IO, "--map-org-file %s: %s", CLI_Q(path),
					  strerror(e));
	}
	while (rc == EX_OK && (len = getline(&line, &cap, f)) >= 0) {
		no++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		snprintf(where, sizeof(where), "--map-org-file line %zu", no);
		rc = org_map_add(cli, m, line, where);
	}
	free(line);
	fclose(f);
	return rc;
}

int envdb_cli_migrate_v4_to_v5(envdb_cli *cli, int argc, char **argv)
{
	bool dry = false;
	const char *legacy = NULL, *by = NULL, *map_file = NULL;
	int64_t batch = 0;
	envdb_cli_opt opts[] = {
		{"dry-run", ENVDB_CLI_FLAG, &dry},
		{"batch", ENVDB_CLI_INT, &batch},
		{"legacy-encryptor", ENVDB_CLI_STRING, &legacy},
		{"by", ENVDB_CLI_STRING, &by},
		{"map-org-file", ENVDB_CLI_STRING, &map_file},
		{NULL, 0, NULL},
	};
	envdb_migrate_opts mo = ENVDB_MIGRATE_OPTS_INIT;
	envdb_migrate_report *rep = NULL;
	progress_state ps;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	org_map map = {NULL, 0, 0};
	char **args = calloc((size_t)argc + 1, sizeof(*args));
	int rc, ex, nargs = 0, i;

	if (args == NULL)
		return envdb_cli_fail_msg(cli, ENVDB_ERR_NOMEM, "out of memory");
	/* --map-org may be repeated: taken out before the common parser */
	for (i = 0; i < argc; i++) {
		const char *spec = NULL;

		if (strcmp(argv[i], "--map-org") == 0) {
			if (i + 1 >= argc) {
				ex = envdb_cli_usage(cli, "--map-org: needs OLD=NEW");
				goto done;
			}
			spec = argv[++i];
		} else if (strncmp(argv[i], "--map-org=", 10) == 0) {
			spec = argv[i] + 10;
		} else if (strcmp(argv[i], "--") == 0) {
			while (i < argc)
				args[nargs++] = argv[i++];
			break;
		} else {
			args[nargs++] = argv[i];
			continue;
		}
		if ((ex = org_map_add(cli, &map, spec, "--map-org")) != EX_OK)
			goto done;
	}
	if ((ex = envdb_cli_parse(cli, nargs, args, opts, &pos, 0, 0)) != EX_OK)
		goto done;
	if (batch < 0 || batch > 1000000) {
		ex = envdb_cli_usage(cli, "--batch: %lld is not between 1 and 1000000",
				     (long long)batch);
		goto done;
	}
	if (map_file != NULL && (ex = org_map_file(cli, &map, map_file)) != EX_OK)
		goto done;
	/* a dry run reads a private snapshot: not a byte of the files changes */
	if ((ex = envdb_cli_open(cli, &ctx, dry ? ENVDB_OPEN_SNAPSHOT : 0)) != EX_OK)
		goto done;
	memset(&ps, 0, sizeof(ps));
	envdb_cli_progress_begin(&ps.p);
	ps.dry_run = dry;
	mo.dry_run = dry;
	mo.batch = (size_t)batch;
	mo.legacy_encryptor = legacy;
	mo.by = by;
	mo.org_map = (const char *const *)map.v;
	mo.n_org_map = map.n;
	if (ps.p.enabled) {
		mo.progress = on_progress;
		mo.progress_ctx = &ps;
	}
	rc = envdb_migrate_v4_to_v5(&rep, ctx, &mo);
	envdb_cli_progress_end(&ps.p);
	ex = EX_OK;
	if (rep != NULL) {
		if (cli->json)
			ex = envdb_cli_json_print(cli, report_json(rep));
		else
			report_text(cli, rep);
		if (rep->rows_plaintext > 0)
			envdb_cli_error(cli, "warning: %s", plaintext_warning);
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
done:
	envdb_migrate_report_free(rep);
	envdb_close(ctx);
	org_map_free(&map);
	free(args);
	return ex;
}

int envdb_cli_migrate_wipe(envdb_cli *cli, int argc, char **argv)
{
	bool dry = false;
	envdb_cli_opt opts[] = {
		{"dry-run", ENVDB_CLI_FLAG, &dry},
		{NULL, 0, NULL},
	};
	envdb_wipe_report *rep = NULL;
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	size_t i;
	int rc, ex;

	if ((rc = envdb_cli_parse(cli, argc, argv, opts, &pos, 0, 0)) != EX_OK)
		return rc;
	if ((rc = envdb_cli_open(cli, &ctx, dry ? ENVDB_OPEN_SNAPSHOT : 0)) != EX_OK)
		return rc;
	rc = envdb_migrate_wipe_legacy_tokens(&rep, ctx, dry);
	if (rc != ENVDB_OK) {
		ex = envdb_cli_fail(cli, rc);
		goto out;
	}
	if (cli->json) {
		json_t *rows = json_array();

		for (i = 0; i < rep->n_rows; i++) {
			const envdb_wipe_row *w = &rep->rows[i];
			json_t *j = json_pack("{s:s, s:o, s:s, s:b}", "legacy_id", w->legacy_id,
					      "organization_id", jstr(w->organization_id),
					      "environment_id", w->environment_id, "wiped", w->wiped);

			if (j != NULL && w->reason != NULL)
				json_object_set_new(j, "reason", json_string(w->reason));
			json_array_append_new(rows, j);
		}
		ex = envdb_cli_json_print(cli, json_pack("{s:b, s:I, s:I, s:o}", "dry_run",
							 rep->dry_run, "wiped",
							 (json_int_t)rep->wiped, "refused",
							 (json_int_t)rep->refused, "rows", rows));
	} else {
		envdb_cli_print(cli, "wipe-legacy-tokens%s: %zu legacy token(s) %s, %zu kept\n",
				dry ? " (dry run)" : "", rep->wiped, dry ? "would be wiped" : "wiped",
				rep->refused);
		for (i = 0; i < rep->n_rows; i++)
			if (rep->rows[i].reason != NULL)
				envdb_cli_print(cli, "  refused  %s\n", rep->rows[i].reason);
		ex = EX_OK;
	}
	if (ex == EX_OK && rep->refused > 0) {
		envdb_cli_error(cli,
				"migrate wipe-legacy-tokens: %zu token(s) kept: their environments do "
				"not resolve",
				rep->refused);
		ex = EX_DATAERR;
	}
out:
	envdb_wipe_report_free(rep);
	envdb_close(ctx);
	return ex;
}
