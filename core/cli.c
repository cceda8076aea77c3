/*
 * core/cli.c — the envdb command: global options, the ONE dispatch table,
 * help, and the helpers every command shares (declared in core/cli.h).
 *
 *   envdb [--manifest FILE] [--output json|tsv|table] [--json] [--quiet]
 *         COMMAND [SUBCOMMAND] [ARGS]
 *
 * To add a command, add a row to `commands` below and its handler in your
 * own core/cli_<group>.c (see cli.h).
 */
#include "config.h"

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "duration.h"

#ifndef ENVDB_SYSCONF_DIR
#define ENVDB_SYSCONF_DIR "/etc/envdb"
#endif

/* ------------------------------------------------------------------------ */
/* The dispatch table: one row per command; `envdb --help` lists them all.   */
/* Rows of one command word stay together, in the order help shows them.     */
/* ------------------------------------------------------------------------ */

static const envdb_cli_command commands[] = {
	/* plugin host, manifest, keys (cli_host.c) */
	{"init", NULL, envdb_cli_init, "[DIR] [--plugin-dir DIR]",
	 "set up DIR: envdb.yaml, control plane, keyring with a first key, environments/; "
	 "with --manifest FILE and no DIR: what FILE describes (idempotent)",
	 "--plugin-dir DIR\tthe plugin directory the new manifest names (default: the installed "
	 "one)"},
	{"plugins", NULL, envdb_cli_plugins, "",
	 "list the loaded plugins: name, kind, version, ABI, capabilities, path", NULL},
	{"manifest", "check", envdb_cli_manifest_check, "[FILE]",
	 "validate a manifest and the descriptor and configuration of each plugin", NULL},
	{"key", "list", envdb_cli_key_list, "[--encryptor NAME]",
	 "list the keys of the (default) encryptor",
	 "--encryptor NAME\tthe encryptor plugin (default: defaults.encryptor)"},
	{"key", "generate", envdb_cli_key_generate, "[--encryptor NAME] [--current]",
	 "create a key (the current one with --current)",
	 "--encryptor NAME\tthe encryptor plugin (default: defaults.encryptor)\n"
	 "--current\tmake the new key the current one (new credentials are sealed with it)"},
	{"key", "rotate", envdb_cli_key_rotate, "[--encryptor NAME]",
	 "create a key and make it current (then `rewrap` re-encrypts credentials)",
	 "--encryptor NAME\tthe encryptor plugin (default: defaults.encryptor)"},
	/* environments, credentials, resolve, reconcile (cli_env.c) */
	{"key", "rewrap", envdb_cli_key_rewrap, "[--dry-run]",
	 "re-encrypt every credential under the current key (counts: total, already current, "
	 "rewrapped; progress on a terminal)",
	 "--dry-run\tcount only, change nothing"},
	{"org", "list", envdb_cli_org_list, "",
	 "list the organizations (those that have environments): environments by status, "
	 "default environment",
	 NULL},
	{"org", "show", envdb_cli_org_show, "ORG",
	 "show an organization: its environments by status, its default, every environment", NULL},
	{"org", "provision", envdb_cli_org_provision,
	 "ORG [--slug prod] [--type production] [--by USER] [--driver D] [--region R] [--plan P] "
	 "[--storage-mb N]",
	 "provision an organization: its default environment, USER (default: you) its owner",
	 "--slug SLUG\tthe default environment's slug (default: prod)\n"
	 "--type TYPE\tits type (default: production)\n"
	 "--by USER\tthe owner recorded as created_by (default: your login name)\n"
	 "--driver D\tthe adapter plugin (default: defaults.driver)\n"
	 "--region R\tthe region (default: defaults.region)\n"
	 "--plan P\tfree, starter, pro, enterprise or custom (default: defaults.plan)\n"
	 "--storage-mb N\tthe storage limit in MiB (default: defaults.storage_limit_mb)\n"
	 "--display-name NAME\ta name to show\n"
	 "--metadata JSON\ta JSON object kept with the environment"},
	{"env", "provision", envdb_cli_env_provision,
	 "ORG SLUG --type T [--default] [--by USER] [--driver D] [--region R] [--plan P] "
	 "[--storage-mb N]",
	 "provision an environment with its own database; USER (default: you) is its owner",
	 "--type T\tproduction, sandbox, development, test, staging, preview or trial (required)\n"
	 "--default\tmake it the organization's default environment\n"
	 "--by USER\tthe owner recorded as created_by (default: your login name)\n"
	 "--driver D\tthe adapter plugin (default: defaults.driver)\n"
	 "--region R\tthe region (default: defaults.region)\n"
	 "--plan P\tfree, starter, pro, enterprise or custom (default: defaults.plan)\n"
	 "--storage-mb N\tthe storage limit in MiB (default: defaults.storage_limit_mb)\n"
	 "--display-name NAME\ta name to show\n"
	 "--metadata JSON\ta JSON object kept with the environment"},
	{"env", "list", envdb_cli_env_list, "[ORG]", "list environments", NULL},
	{"env", "show", envdb_cli_env_show, "ORG/SLUG",
	 "show an environment, its database, credentials (never secrets) and members", NULL},
	{"env", "archive", envdb_cli_env_archive, "ORG/SLUG [--yes]",
	 "archive an environment: it stops resolving, its credentials are locked out at the "
	 "backend where the driver can, its database is kept (undo: env unarchive); the default "
	 "environment asks first",
	 "--yes\tarchive the organization's default environment without asking (needed when "
	 "stdin is not a terminal)"},
	{"env", "unarchive", envdb_cli_env_unarchive, "ORG/SLUG",
	 "make an archived environment active again (its credentials work again)", NULL},
	{"env", "delete", envdb_cli_env_delete, "ORG/SLUG [--now] [--yes]",
	 "delete an environment: its database is dropped after the grace period (or --now, "
	 "which asks first)",
	 "--now\tdrop the database at once instead of after the grace period (cannot be undone)\n"
	 "--yes\twith --now: do not ask (needed when stdin is not a terminal)"},
	{"cred", "rotate", envdb_cli_cred_rotate,
	 "ORG/SLUG [--overlap DURATION] [--expires DURATION] [--authorization A]",
	 "mint new credentials; the previous ones stay valid for the overlap",
	 "--overlap DURATION\thow long the previous credential keeps working (90s, 15m, 1h30m, "
	 "7d; default: credentials.rotation_overlap_seconds; 0: revoked at once)\n"
	 "--expires DURATION\tlifetime of the new credential (default: none)\n"
	 "--authorization A\trotate only the full_access or the read_only credential"},
	{"cred", "mint", envdb_cli_cred_mint, "ORG/SLUG --authorization A [--expires DURATION]",
	 "mint a credential of authorization A where none is active (after a revoke, or a "
	 "read_only one for an environment made before its driver could)",
	 "--authorization A\tfull_access or read_only (required)\n"
	 "--expires DURATION\tlifetime of the credential (90s, 15m, 1h30m, 7d; default: none)"},
	{"cred", "complete", envdb_cli_cred_complete, "ORG/SLUG",
	 "end the overlap now: revoke the rotating credentials", NULL},
	{"cred", "list", envdb_cli_cred_list, "ORG/SLUG", "list credentials (never secrets)", NULL},
	{"cred", "revoke", envdb_cli_cred_revoke, "ORG/SLUG CREDENTIAL_ID",
	 "revoke one credential (not the active full_access one: rotate instead)", NULL},
	{"resolve", NULL, envdb_cli_resolve, "ORG/SLUG --user USER [--reveal]",
	 "driver, URL and credential of the user's authorization (the secret only with --reveal)",
	 "--user USER\tthe member to resolve for (default: your login name)\n"
	 "--reveal\tprint the secret too"},
	{"reconcile", NULL, envdb_cli_reconcile, "[--apply [--force]]",
	 "find interrupted or due work and orphan databases; --apply repairs (--force: even "
	 "more orphans than the safety limit)",
	 "--apply\tdo the repairs (without it: a dry run, exit 1 when there is work)\n"
	 "--force\twith --apply: drop orphans even beyond the safety limit"},
	/* members, invariant check, object definitions (cli_store.c) */
	{"member", "add", envdb_cli_member_add, "ORG/SLUG USER ROLE [--by USER] [--update]",
	 "add USER with ROLE (owner, admin, maker, reader, guest); --update changes the role of "
	 "an existing member",
	 "--by USER\twho invited the member (default: your login name)\n"
	 "--update\tchange the role of an existing member instead of failing"},
	{"member", "remove", envdb_cli_member_remove, "ORG/SLUG USER [--yes]",
	 "remove a member (the last owner only after asking)",
	 "--yes\tremove the environment's last owner without asking (needed when stdin is not a "
	 "terminal)"},
	{"member", "list", envdb_cli_member_list, "ORG/SLUG", "list the members and their roles",
	 NULL},
	{"check", NULL, envdb_cli_check, "[--no-decrypt]",
	 "verify every invariant of the control plane (and open every ciphertext unless "
	 "--no-decrypt); exit 65 when any is violated",
	 "--no-decrypt\tdo not open the ciphertexts (no encryptor needed; faster)"},
	{"schema", NULL, envdb_cli_schema, "",
	 "print the object definitions (fields, types, enum values, indexes); --json for JSON",
	 NULL},
	{"backup", NULL, envdb_cli_backup, "FILE",
	 "write a consistent copy of the control plane to the new FILE (0600; never overwrites), "
	 "while other processes keep working",
	 NULL},
	{"restore", NULL, envdb_cli_restore, "FILE [--force]",
	 "check the backup FILE and put it in place of the control plane (an existing one only "
	 "with --force, and only when no process has it open)",
	 "--force\treplace an existing control plane"},
	{"store", "copy", envdb_cli_store_copy, "--to MANIFEST",
	 "copy every object of the control plane into the new, empty control plane MANIFEST "
	 "names (SQLite to PostgreSQL and back), counts and envdb check verified; an "
	 "interrupted copy leaves the target empty",
	 "--to MANIFEST\tthe manifest of the target deployment (its control plane must be empty)"},
	/* v4 -> v5 migration (cli_migrate.c) */
	{"migrate", "v4-to-v5", envdb_cli_migrate_v4_to_v5,
	 "[--dry-run] [--batch N] [--legacy-encryptor NAME|none] [--by USER] [--map-org OLD=NEW]... "
	 "[--map-org-file FILE]",
	 "turn every legacy v4 tenant database into a default prod environment (same physical "
	 "database); idempotent, each organization atomic",
	 "--dry-run\twork on a private snapshot: report what a run would do, change nothing\n"
	 "--batch N\torganizations per durable commit (1 to 1000000; default 4096)\n"
	 "--legacy-encryptor NAME|none\tthe encryptor holding the v4 keys (none: plaintext "
	 "tokens)\n"
	 "--by USER\tthe owner of every migrated environment (default: none)\n"
	 "--map-org OLD=NEW\tgive a legacy organization id v5 cannot address a new id "
	 "(repeatable)\n"
	 "--map-org-file FILE\tOLD=NEW lines"},
	{"migrate", "wipe-legacy-tokens", envdb_cli_migrate_wipe, "[--dry-run]",
	 "wipe the v4 token of every migrated legacy row whose environment resolves",
	 "--dry-run\tcount only, change nothing"},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* ------------------------------------------------------------------------ */
/* Exit statuses                                                             */
/* ------------------------------------------------------------------------ */

int envdb_cli_exit_status(int status)
{
	switch (status) {
	case ENVDB_OK:
		return EX_OK;
	case ENVDB_ERR_NOT_FOUND:
	case ENVDB_ERR_EXISTS:
	case ENVDB_ERR_INVALID:
	case ENVDB_ERR_STATE:
	case ENVDB_ERR_INTEGRITY:
		return EX_DATAERR;
	case ENVDB_ERR_AUTH:
	case ENVDB_ERR_PERMISSION:
		return EX_NOPERM;
	case ENVDB_ERR_UNAVAILABLE:
	case ENVDB_ERR_NOT_SUPPORTED:
		return EX_UNAVAILABLE;
	case ENVDB_ERR_TIMEOUT:
	case ENVDB_ERR_BUSY:
		return EX_TEMPFAIL;
	case ENVDB_ERR_NOMEM:
		return EX_OSERR;
	case ENVDB_ERR_IO:
		return EX_IOERR;
	case ENVDB_ERR_CONFIG:
	case ENVDB_ERR_ABI:
		return EX_CONFIG;
	case ENVDB_ERR_MISUSE:
	case ENVDB_ERR_BUFFER_TOO_SMALL:
	case ENVDB_ERR_GENERIC:
	default:
		return EX_SOFTWARE;
	}
}

/* ------------------------------------------------------------------------ */
/* Output and errors                                                         */
/* ------------------------------------------------------------------------ */

static void verror(const char *prefix, const char *fmt, va_list ap) ENVDB_PRINTF(2, 0);

static void verror(const char *prefix, const char *fmt, va_list ap)
{
	char msg[4096];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	fprintf(stderr, "envdb: %s%s\n", prefix ? prefix : "", msg);
}

void envdb_cli_error(envdb_cli *cli, const char *fmt, ...)
{
	va_list ap;

	(void)cli;
	va_start(ap, fmt);
	verror(NULL, fmt, ap);
	va_end(ap);
}

void envdb_cli_print(envdb_cli *cli, const char *fmt, ...)
{
	va_list ap;

	if (cli->json || cli->quiet)
		return;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
}

void envdb_cli_note(envdb_cli *cli, const char *fmt, ...)
{
	va_list ap;

	if (cli->json || cli->quiet || cli->output != ENVDB_CLI_OUT_TABLE)
		return;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
}

bool envdb_cli_quiet_id(envdb_cli *cli, const char *id)
{
	if (!cli->quiet)
		return false;
	if (id != NULL && id[0] != '\0' && !cli->json)
		printf("%s\n", id);
	return true;
}

int envdb_cli_json_print(envdb_cli *cli, json_t *doc)
{
	if (doc == NULL) {
		envdb_cli_error(cli, "out of memory building the JSON output");
		return EX_SOFTWARE;
	}
	if (cli->emitted) {
		json_decref(doc);
		envdb_cli_error(cli, "internal error: a second JSON document");
		return EX_SOFTWARE;
	}
	cli->emitted = true;
	json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	fflush(stdout);
	json_decref(doc);
	return EX_OK;
}

static void json_error_doc(envdb_cli *cli, int status, int code, const char *message,
			   const char *native)
{
	if (!cli->json || cli->emitted)
		return;
	envdb_cli_json_print(cli, json_pack("{s:o}", "error",
					    envdb_cli_error_json(envdb_cli_error_code(status), code,
								 status, message, native)));
}

static const char *command_words(const envdb_cli *cli, char *buf, size_t cap)
{
	if (cli->command == NULL)
		return "";
	snprintf(buf, cap, "%s%s%s", cli->command->name, cli->command->sub ? " " : "",
		 cli->command->sub ? cli->command->sub : "");
	return buf;
}

int envdb_cli_fail(envdb_cli *cli, int status)
{
	const envdb_error *e = envdb_error_last();
	const char *msg = e->message[0] ? e->message : envdb_status_str(status);
	int code = envdb_cli_exit_status(status);

	fprintf(stderr, "envdb: %s\n", msg);
	json_error_doc(cli, status, code, msg, e->native_code);
	return code;
}

int envdb_cli_fail_msg(envdb_cli *cli, int status, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;
	int code = envdb_cli_exit_status(status);

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "envdb: %s\n", msg);
	json_error_doc(cli, status, code, msg, NULL);
	return code;
}

const char *envdb_cli_quote(char *buf, size_t cap, const char *s)
{
	envdbi_quote(buf, cap, s);
	return buf;
}

int envdb_cli_usage(envdb_cli *cli, const char *fmt, ...)
{
	char msg[2048], words[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	command_words(cli, words, sizeof(words));
	if (cli->command != NULL)
		fprintf(stderr, "envdb: %s: %s\nusage: envdb %s%s%s\n", words, msg, words,
			cli->command->args[0] ? " " : "", cli->command->args);
	else
		fprintf(stderr, "envdb: %s\n(see envdb --help)\n", msg);
	if (cli->json && !cli->emitted) {
		envdb_cli_json_print(cli,
				     json_pack("{s:o}", "error",
					       envdb_cli_error_json("usage", EX_USAGE,
								    ENVDB_ERR_MISUSE, msg, NULL)));
	}
	return EX_USAGE;
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                 */
/* ------------------------------------------------------------------------ */

/* Levenshtein distance of a and b (b of length b_len), capped: at most
 * 64 bytes each are compared (longer: "far"). */
static size_t edit_distance(const char *a, const char *b, size_t b_len)
{
	size_t row[65], la = strlen(a), i, j;

	if (la > 64 || b_len > 64)
		return SIZE_MAX;
	for (j = 0; j <= b_len; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (j = 1; j <= b_len; j++) {
			size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[b_len];
}

/* The candidate nearest to `word` (its first `len` bytes) at an edit
 * distance of at most 2, or NULL; names[] ends with NULL. */
static const char *nearest(const char *const *names, const char *word, size_t len)
{
	const char *best = NULL;
	size_t best_d = 3, i;

	for (i = 0; names[i] != NULL; i++) {
		size_t d = edit_distance(names[i], word, len);

		if (d < best_d) {
			best_d = d;
			best = names[i];
		}
	}
	return best;
}

static const envdb_cli_opt *find_opt(const envdb_cli_opt *opts, const char *name, size_t len)
{
	for (; opts != NULL && opts->name != NULL; opts++)
		if (strlen(opts->name) == len && strncmp(opts->name, name, len) == 0)
			return opts;
	return NULL;
}

int envdb_cli_parse(envdb_cli *cli, int argc, char **argv, const envdb_cli_opt *opts,
		    envdb_cli_args *pos, int min_pos, int max_pos)
{
	bool options = true, seen[64];
	int i;

	memset(seen, 0, sizeof(seen));
	pos->n = 0;
	for (i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (options && strcmp(a, "--") == 0) {
			options = false;
			continue;
		}
		if (options && a[0] == '-' && a[1] != '\0') {
			const char *name = a + (a[1] == '-' ? 2 : 1);
			const char *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			const envdb_cli_opt *o = a[1] == '-' ? find_opt(opts, name, len) : NULL;
			const char *value = eq ? eq + 1 : NULL;

			if (o == NULL) {
				const char *names[72], *hint;
				size_t k = 0;

				for (const envdb_cli_opt *q = opts; q && q->name && k < 64; q++)
					names[k++] = q->name;
				names[k++] = "json";
				names[k++] = "output";
				names[k++] = "quiet";
				names[k++] = "manifest";
				names[k++] = "help";
				names[k] = NULL;
				hint = a[1] == '-' ? nearest(names, name, len) : NULL;
				if (hint != NULL)
					return envdb_cli_usage(
						cli, "unknown option %s (did you mean --%s?)",
						CLI_Q(a), hint);
				return envdb_cli_usage(cli, "unknown option %s", CLI_Q(a));
			}
			if (o->type != ENVDB_CLI_FLAG && (size_t)(o - opts) < sizeof(seen)) {
				if (seen[o - opts])
					return envdb_cli_usage(
						cli,
						"option --%s given twice (it takes one "
						"value)",
						o->name);
				seen[o - opts] = true;
			}
			if (o->type == ENVDB_CLI_FLAG) {
				if (value != NULL)
					return envdb_cli_usage(cli, "option --%s takes no value",
							       o->name);
				*(bool *)o->out = true;
				continue;
			}
			if (value == NULL) {
				if (i + 1 >= argc)
					return envdb_cli_usage(cli, "option --%s needs a value",
							       o->name);
				value = argv[++i];
			}
			if (o->type == ENVDB_CLI_INT) {
				char *end;
				long long v;
				errno = 0;
				v = strtoll(value, &end, 10);
				if (errno != 0 || end == value || *end != '\0')
					return envdb_cli_usage(cli, "--%s: '%s': not an integer",
							       o->name, CLI_Q(value));
				*(int64_t *)o->out = v;
			} else if (o->type == ENVDB_CLI_DURATION) {
				if (envdbi_duration_parse((int64_t *)o->out, value) != 0)
					return envdb_cli_usage(
						cli,
						"--%s: '%s': not a duration (examples: " ENVDBI_DURATION_EXAMPLES
						")",
						o->name, CLI_Q(value));
			} else {
				*(const char **)o->out = value;
			}
			continue;
		}
		if (pos->n >= max_pos || pos->n >= ENVDB_CLI_MAX_ARGS)
			return envdb_cli_usage(cli, "unexpected argument '%s'", CLI_Q(a));
		pos->v[pos->n++] = argv[i];
	}
	if (pos->n < min_pos)
		return envdb_cli_usage(cli, "missing argument%s", min_pos - pos->n > 1 ? "s" : "");
	return EX_OK;
}

int envdb_cli_env_ref_parse(envdb_cli *cli, envdb_cli_env_ref *out, const char *arg)
{
	const char *slash = arg ? strchr(arg, '/') : NULL;
	size_t org_len, i;

	if (slash == NULL || slash == arg || slash[1] == '\0' || strchr(slash + 1, '/') != NULL)
		return envdb_cli_usage(cli, "'%s' is not ORG/SLUG (e.g. acme/prod)",
				       CLI_Q(arg ? arg : ""));
	for (i = 0; arg[i]; i++)
		if (arg[i] == ' ' || arg[i] == '\t' || arg[i] == '\n' || arg[i] == '\r')
			return envdb_cli_usage(cli, "'%s': ORG/SLUG contains whitespace", CLI_Q(arg));
	org_len = (size_t)(slash - arg);
	if (org_len >= sizeof(out->org) || strlen(slash + 1) >= sizeof(out->slug))
		return envdb_cli_usage(cli, "'%s': ORG/SLUG is too long", CLI_Q(arg));
	memcpy(out->org, arg, org_len);
	out->org[org_len] = '\0';
	snprintf(out->slug, sizeof(out->slug), "%s", slash + 1);
	return EX_OK;
}

/* ------------------------------------------------------------------------ */
/* Confirmation of destructive commands, progress                            */
/* ------------------------------------------------------------------------ */

int envdb_cli_confirm(envdb_cli *cli, bool yes, const char *fmt, ...)
{
	char question[1024], answer[16];
	va_list ap;
	FILE *tty;
	bool ok;

	if (yes)
		return EX_OK;
	va_start(ap, fmt);
	vsnprintf(question, sizeof(question), fmt, ap);
	va_end(ap);
	if (!isatty(STDIN_FILENO) || (tty = fopen("/dev/tty", "r+e")) == NULL)
		return envdb_cli_usage(cli,
				       "not confirmed (stdin is not a terminal): pass --yes "
				       "to %s; nothing changed",
				       question);
	fprintf(tty, "%s? [y/N] ", question);
	fflush(tty);
	ok = fgets(answer, sizeof(answer), tty) != NULL &&
	     (strcmp(answer, "y\n") == 0 || strcmp(answer, "Y\n") == 0 ||
	      strcmp(answer, "yes\n") == 0 || strcmp(answer, "YES\n") == 0);
	fclose(tty);
	if (ok)
		return EX_OK;
	return envdb_cli_usage(cli, "not confirmed: nothing changed");
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fmt_eta(char *buf, size_t cap, double seconds)
{
	long s = seconds < 0 ? 0 : (long)(seconds + 0.5);

	if (s >= 3600)
		snprintf(buf, cap, "%ldh%02ldm", s / 3600, (s / 60) % 60);
	else if (s >= 60)
		snprintf(buf, cap, "%ldm%02lds", s / 60, s % 60);
	else
		snprintf(buf, cap, "%lds", s);
}

void envdb_cli_progress_begin(envdb_cli_progress *p)
{
	memset(p, 0, sizeof(*p));
	p->enabled = isatty(STDERR_FILENO) != 0;
	p->start_ms = mono_ms();
	p->last_ms = -1000;
}

void envdb_cli_progress_update(envdb_cli_progress *p, const char *what, size_t done, size_t total,
			       const char *unit, const char *rate_unit, const char *extra,
			       int64_t elapsed_ms)
{
	double secs, rate;
	char eta[32] = "?";

	if (!p->enabled)
		return;
	if (elapsed_ms < 0)
		elapsed_ms = mono_ms() - p->start_ms;
	if (done < total && elapsed_ms - p->last_ms < 200)
		return;
	p->last_ms = elapsed_ms;
	secs = (double)elapsed_ms / 1000.0;
	rate = secs > 0 ? (double)done / secs : 0;
	if (rate > 0)
		fmt_eta(eta, sizeof(eta), (double)(total - done) / rate);
	fprintf(stderr, "\r\033[K%s: %zu/%zu %s (%.0f%%)%s%s, %.0f %s/s, ETA %s", what, done, total,
		unit, total ? 100.0 * (double)done / (double)total : 100.0, extra ? ", " : "",
		extra ? extra : "", rate, rate_unit, eta);
	fflush(stderr);
	p->shown = true;
}

void envdb_cli_progress_end(envdb_cli_progress *p)
{
	if (p->shown)
		fputc('\n', stderr);
	p->shown = false;
}

/* ------------------------------------------------------------------------ */
/* Manifest and context                                                      */
/* ------------------------------------------------------------------------ */

static bool file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

int envdb_cli_manifest(envdb_cli *cli, const char **path)
{
	const char *env = getenv("ENVDB_MANIFEST");
	const char *sys = getenv("ENVDB_SYSTEM_MANIFEST");

	/* ENVDB_SYSTEM_MANIFEST stands for the installed default: the tests set
	 * it, so that what `make install` left behind never decides a result. */
	if (sys == NULL || sys[0] == '\0')
		sys = ENVDB_SYSCONF_DIR "/envdb.yaml";

	if (cli->manifest_opt != NULL) {
		*path = cli->manifest_opt;
		return EX_OK;
	}
	if (env != NULL && env[0] != '\0') {
		*path = env;
		return EX_OK;
	}
	if (file_exists("envdb.yaml")) {
		snprintf(cli->manifest_buf, sizeof(cli->manifest_buf), "envdb.yaml");
		*path = cli->manifest_buf;
		return EX_OK;
	}
	if (file_exists(sys)) {
		*path = sys;
		return EX_OK;
	}
	return envdb_cli_fail_msg(cli, ENVDB_ERR_CONFIG,
				  "no manifest: give --manifest FILE, set ENVDB_MANIFEST, or run "
				  "`envdb init` (looked for ./envdb.yaml and %s)",
				  sys);
}

int envdb_cli_open(envdb_cli *cli, envdb_ctx **ctx, unsigned flags)
{
	const char *path = NULL;
	int rc;

	*ctx = NULL;
	if ((rc = envdb_cli_manifest(cli, &path)) != EX_OK)
		return rc;
	rc = envdb_open(ctx, path, flags);
	if (rc != ENVDB_OK)
		return envdb_cli_fail(cli, rc);
	return EX_OK;
}

/* ------------------------------------------------------------------------ */
/* Help and version                                                          */
/* ------------------------------------------------------------------------ */

static void usage_line(char *buf, size_t cap, const envdb_cli_command *c)
{
	snprintf(buf, cap, "%s%s%s%s%s", c->name, c->sub ? " " : "", c->sub ? c->sub : "",
		 c->args[0] ? " " : "", c->args);
}

/* The flags text of a row as a JSON array of {option, help}. */
static json_t *flags_json(const envdb_cli_command *c)
{
	json_t *arr = json_array();
	const char *p = c->flags;

	while (p != NULL && *p != '\0') {
		const char *nl = strchr(p, '\n'), *tab;
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		tab = memchr(p, '\t', len);
		if (tab != NULL)
			json_array_append_new(arr, json_pack("{s:s%, s:s%}", "option", p,
							     (size_t)(tab - p), "help", tab + 1,
							     (size_t)(p + len - tab - 1)));
		p += len + (nl != NULL);
	}
	return arr;
}

/* `envdb COMMAND SUB --help`, `envdb help COMMAND SUB`: one command, its
 * options explained. */
static int print_command_help(envdb_cli *cli, const envdb_cli_command *c)
{
	char line[512];
	const char *p = c->flags;

	usage_line(line, sizeof(line), c);
	if (cli->json)
		return envdb_cli_json_print(cli,
					    json_pack("{s:s, s:s?, s:s, s:s, s:o}", "command",
						      c->name, "subcommand", c->sub, "usage", line,
						      "help", c->help, "options", flags_json(c)));
	printf("usage: envdb %s\n\n%s\n", line, c->help);
	if (p != NULL && *p != '\0')
		printf("\noptions:\n");
	while (p != NULL && *p != '\0') {
		const char *nl = strchr(p, '\n'), *tab;
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		tab = memchr(p, '\t', len);
		if (tab != NULL && tab - p <= 26)
			printf("  %-26.*s  %.*s\n", (int)(tab - p), p, (int)(p + len - tab - 1),
			       tab + 1);
		else if (tab != NULL)
			printf("  %.*s\n  %-26s  %.*s\n", (int)(tab - p), p, "",
			       (int)(p + len - tab - 1), tab + 1);
		p += len + (nl != NULL);
	}
	printf("\nglobal options: --manifest FILE, --output json|tsv|table, -j/--json, -q/--quiet, "
	       "--help (envdb --help)\n");
	return EX_OK;
}

/* The distinct command words of the table (NULL-terminated). */
static void command_names(const char **names, size_t cap)
{
	size_t i, k = 0;

	for (i = 0; i < N_COMMANDS && k + 1 < cap; i++)
		if (k == 0 || strcmp(names[k - 1], commands[i].name) != 0)
			names[k++] = commands[i].name;
	names[k] = NULL;
}

static int unknown_command(envdb_cli *cli, const char *word)
{
	const char *names[N_COMMANDS + 1], *hint;

	command_names(names, N_COMMANDS + 1);
	hint = nearest(names, word, strlen(word));
	if (hint != NULL)
		return envdb_cli_usage(cli, "unknown command '%s' (did you mean '%s'?)",
				       CLI_Q(word), hint);
	return envdb_cli_usage(cli, "unknown command '%s'", CLI_Q(word));
}

static int print_help(envdb_cli *cli, const char *only, const char *only_sub)
{
	char line[512];
	size_t i, shown = 0;

	for (i = 0; i < N_COMMANDS; i++) {
		if (only == NULL || strcmp(commands[i].name, only) == 0)
			shown++;
		if (only != NULL && strcmp(commands[i].name, only) == 0 &&
		    (commands[i].sub == NULL ||
		     (only_sub != NULL && strcmp(commands[i].sub, only_sub) == 0)))
			return print_command_help(cli, &commands[i]);
	}
	if (shown == 0)
		return unknown_command(cli, only);
	if (only_sub != NULL) {
		const char *names[N_COMMANDS + 1], *hint;
		size_t k = 0;

		for (i = 0; i < N_COMMANDS; i++)
			if (strcmp(commands[i].name, only) == 0 && commands[i].sub)
				names[k++] = commands[i].sub;
		names[k] = NULL;
		hint = nearest(names, only_sub, strlen(only_sub));
		if (hint != NULL)
			return envdb_cli_usage(
				cli, "%s: unknown subcommand '%s' (did you mean '%s %s'?)", only,
				CLI_Q(only_sub), only, hint);
		return envdb_cli_usage(cli, "%s: unknown subcommand '%s'", only, CLI_Q(only_sub));
	}
	if (cli->json) {
		json_t *list = json_array();
		for (i = 0; i < N_COMMANDS; i++) {
			if (only != NULL && strcmp(commands[i].name, only) != 0)
				continue;
			usage_line(line, sizeof(line), &commands[i]);
			json_array_append_new(
				list, json_pack("{s:s, s:s?, s:s, s:s}", "command", commands[i].name,
						"subcommand", commands[i].sub, "usage", line, "help",
						commands[i].help));
		}
		return envdb_cli_json_print(cli, json_pack("{s:o}", "commands", list));
	}
	printf("usage: envdb [--manifest FILE] [--output json|tsv|table] [--json] [--quiet] "
	       "COMMAND [ARGS]\n\ncommands:\n");
	for (i = 0; i < N_COMMANDS; i++) {
		if (only != NULL && strcmp(commands[i].name, only) != 0)
			continue;
		usage_line(line, sizeof(line), &commands[i]);
		if (strlen(line) <= 30)
			printf("  %-30s  %s\n", line, commands[i].help);
		else
			printf("  %s\n  %-30s  %s\n", line, "", commands[i].help);
	}
	printf("\noptions:\n"
	       "  --manifest FILE  the manifest (else $ENVDB_MANIFEST, else ./envdb.yaml,\n"
	       "                   else %s/envdb.yaml)\n"
	       "  --output FORMAT  table (the default: aligned, with headers), tsv (a header\n"
	       "                   line, tab-separated, \\t \\n \\\\ escaped) or json\n"
	       "  -j, --json       --output json: exactly one JSON document on stdout\n"
	       "                   (times ISO 8601 UTC; errors {\"error\":{\"code\",...}})\n"
	       "  -q, --quiet      only the ids of what was listed or made; nothing else\n"
	       "  --help           this help (COMMAND --help: that command's)\n"
	       "  --version        version of envdb and of the plugin ABI\n"
	       "\nexit status: 0 success, 64 usage, 65 bad data (not found, exists, invalid),\n"
	       "  69 unavailable or not supported, 70 internal error, 71 out of memory,\n"
	       "  74 i/o error, 75 timeout or busy (retry), 77 permission, 78 configuration\n",
	       ENVDB_SYSCONF_DIR);
	return EX_OK;
}

static int print_version(envdb_cli *cli)
{
	if (cli->json)
		return envdb_cli_json_print(
			cli, json_pack("{s:s, s:{s:i, s:i}}", "version", envdb_version(), "plugin_abi",
				       "major", ENVDB_ABI_MAJOR, "minor", ENVDB_ABI_MINOR));
	printf("envdb %s (plugin ABI %d.%d)\n", envdb_version(), ENVDB_ABI_MAJOR, ENVDB_ABI_MINOR);
	return EX_OK;
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */
/* ------------------------------------------------------------------------ */

static int set_output(envdb_cli *cli, const char *v)
{
	if (strcmp(v, "json") == 0)
		cli->output = ENVDB_CLI_OUT_JSON;
	else if (strcmp(v, "tsv") == 0)
		cli->output = ENVDB_CLI_OUT_TSV;
	else if (strcmp(v, "table") == 0)
		cli->output = ENVDB_CLI_OUT_TABLE;
	else
		return envdb_cli_usage(cli, "--output %s: one of json, tsv, table", CLI_Q(v));
	cli->json = cli->output == ENVDB_CLI_OUT_JSON;
	return EX_OK;
}

/* The row of command words `name` [`sub`] (sub may be NULL), as main()
 * picks it; NULL when there is none (yet). */
static const envdb_cli_command *row_of(const char *name, const char *sub)
{
	const envdb_cli_command *row = NULL;
	size_t i;

	for (i = 0; i < N_COMMANDS; i++) {
		if (strcmp(commands[i].name, name) != 0)
			continue;
		if (commands[i].sub != NULL && sub != NULL && strcmp(commands[i].sub, sub) == 0)
			return &commands[i];
		if (commands[i].sub == NULL && row == NULL)
			row = &commands[i];
	}
	return row;
}

/* Whether command `row` has option `a` ("--name", no "=") taking a value:
 * its flags line reads "--name VALUE<TAB>...". */
static bool takes_value(const envdb_cli_command *row, const char *a)
{
	const char *p = row != NULL ? row->flags : NULL;
	size_t n = strlen(a);

	while (p != NULL && *p != '\0') {
		if (strncmp(p, a, n) == 0 && p[n] == ' ')
			return true;
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return false;
}

/* Take --json/-j, --output FORMAT, --quiet/-q, --manifest FILE /
 * --manifest=FILE and --help out of argv (up to "--"), wherever an option
 * may start: not the value of the command's option before it (`env provision
 * acme/x --display-name -j` names the environment "-j"), which the command
 * table tells (takes_value).  Returns 0 or EX_USAGE. */
static int take_global_options(envdb_cli *cli, int *argc, char **argv, bool *help)
{
	int i, out = 0, rc, words = 0;
	bool options = true;
	const char *word[2] = {NULL, NULL};
	const envdb_cli_command *row = NULL;

	for (i = 0; i < *argc; i++) {
		char *a = argv[i];
		if (options && strcmp(a, "--") == 0)
			options = false;
		if (!options) {
			argv[out++] = a;
			continue;
		}
		if (row != NULL && strncmp(a, "--", 2) == 0 && strchr(a, '=') == NULL &&
		    takes_value(row, a)) {
			/* the command's option and its value, whatever it looks like */
			argv[out++] = a;
			if (i + 1 < *argc)
				argv[out++] = argv[++i];
			continue;
		}
		if (strcmp(a, "--json") == 0 || strcmp(a, "-j") == 0) {
			cli->output = ENVDB_CLI_OUT_JSON;
			cli->json = true;
		} else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
			cli->quiet = true;
		} else if (strcmp(a, "--output") == 0 || strcmp(a, "-o") == 0) {
			if (i + 1 >= *argc)
				return envdb_cli_usage(cli,
						       "option --output needs json, tsv or table");
			if ((rc = set_output(cli, argv[++i])) != EX_OK)
				return rc;
		} else if (strncmp(a, "--output=", 9) == 0) {
			if ((rc = set_output(cli, a + 9)) != EX_OK)
				return rc;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			*help = true;
		} else if (strcmp(a, "--manifest") == 0) {
			if (i + 1 >= *argc)
				return envdb_cli_usage(cli, "option --manifest needs a FILE");
			if (cli->manifest_opt != NULL)
				return envdb_cli_usage(cli, "option --manifest given twice");
			cli->manifest_opt = argv[++i];
		} else if (strncmp(a, "--manifest=", 11) == 0) {
			if (cli->manifest_opt != NULL)
				return envdb_cli_usage(cli, "option --manifest given twice");
			cli->manifest_opt = a + 11;
		} else {
			argv[out++] = a;
			/* the command words name the row whose options count */
			if (a[0] != '-' && words < 2) {
				word[words++] = a;
				row = row_of(word[0], word[1]);
			}
		}
	}
	*argc = out;
	argv[out] = NULL;
	return EX_OK;
}

/* The command holds secrets (it resolves, mints, rotates, migrates, reads
 * keys): no core dump may write them to disk, and no other process of the
 * user may read its memory through ptrace or /proc.  Done first, for the
 * whole run.  ENVDB_LOG_LEVEL=debug shows the result. */
static void no_core_dumps(void)
{
	struct rlimit rl = {0, 0};
	const char *lvl = getenv("ENVDB_LOG_LEVEL");

	(void)setrlimit(RLIMIT_CORE, &rl);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (lvl != NULL && strcmp(lvl, "debug") == 0 && getrlimit(RLIMIT_CORE, &rl) == 0)
		fprintf(stderr, "envdb: debug: core dumps off: RLIMIT_CORE %llu/%llu, dumpable %d\n",
			(unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
			prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
}

/* JSON documents can hold a revealed secret (`resolve --json --reveal`):
 * every block jansson frees is wiped first. */
static void *json_wiping_malloc(size_t size)
{
	return malloc(size);
}

static void json_wiping_free(void *ptr)
{
	if (ptr != NULL) {
		explicit_bzero(ptr, malloc_usable_size(ptr));
		free(ptr);
	}
}

int main(int argc, char **argv)
{
	envdb_cli cli;
	const envdb_cli_command *row = NULL;
	bool help = false, known = false;
	int n = argc - 1, rc;
	char **args = argv + 1;
	size_t i;

	no_core_dumps();
	envdb_crash_report_install(); /* a crashing plugin is named */
	json_set_alloc_funcs(json_wiping_malloc, json_wiping_free);
	memset(&cli, 0, sizeof(cli));
	if ((rc = take_global_options(&cli, &n, args, &help)) != EX_OK)
		return rc;
	if (n > 0 && (strcmp(args[0], "--version") == 0 || strcmp(args[0], "-V") == 0 ||
		      strcmp(args[0], "version") == 0))
		return print_version(&cli);
	if (n > 0 && strcmp(args[0], "help") == 0)
		return print_help(&cli, n > 1 ? args[1] : NULL, n > 2 ? args[2] : NULL);
	if (n == 0) {
		if (help)
			return print_help(&cli, NULL, NULL);
		return envdb_cli_usage(&cli, "no command given");
	}
	if (args[0][0] == '-')
		return envdb_cli_usage(&cli, "unknown option %s", CLI_Q(args[0]));

	for (i = 0; i < N_COMMANDS; i++) {
		if (strcmp(commands[i].name, args[0]) != 0)
			continue;
		known = true;
		if (commands[i].sub != NULL && n > 1 && strcmp(commands[i].sub, args[1]) == 0) {
			row = &commands[i];
			break;
		}
		if (commands[i].sub == NULL && row == NULL)
			row = &commands[i];
	}
	if (!known)
		return unknown_command(&cli, args[0]);
	if (help)
		return print_help(&cli, args[0],
				  row != NULL                  ? row->sub
				  : n > 1 && args[1][0] != '-' ? args[1]
							       : NULL);
	if (row == NULL) {
		char subs[512];
		size_t used = 0;
		subs[0] = '\0';
		for (i = 0; i < N_COMMANDS; i++)
			if (strcmp(commands[i].name, args[0]) == 0 && commands[i].sub &&
			    used < sizeof(subs)) {
				int w = snprintf(subs + used, sizeof(subs) - used, "%s%s",
						 used ? ", " : "", commands[i].sub);
				if (w > 0)
					used += (size_t)w;
			}
		if (n > 1) {
			const char *names[N_COMMANDS + 1], *hint;
			size_t k = 0;

			for (i = 0; i < N_COMMANDS; i++)
				if (strcmp(commands[i].name, args[0]) == 0 && commands[i].sub)
					names[k++] = commands[i].sub;
			names[k] = NULL;
			hint = nearest(names, args[1], strlen(args[1]));
			if (hint != NULL)
				return envdb_cli_usage(&cli,
						       "%s: unknown subcommand '%s' (did you mean "
						       "'%s %s'?)",
						       args[0], CLI_Q(args[1]), args[0], hint);
			return envdb_cli_usage(&cli, "%s: unknown subcommand '%s' (one of: %s)",
					       args[0], CLI_Q(args[1]), subs);
		}
		return envdb_cli_usage(&cli, "%s: a subcommand is needed (one of: %s)", args[0],
				       subs);
	}
	cli.command = row;
	if (row->sub != NULL)
		rc = row->run(&cli, n - 2, args + 2);
	else
		rc = row->run(&cli, n - 1, args + 1);
	fflush(stdout);
	if (ferror(stdout)) {
		fprintf(stderr, "envdb: cannot write the output: %s\n", strerror(errno));
		if (rc == EX_OK)
			rc = EX_IOERR;
	}
	return rc;
}

int envdb_cli_env_begin(envdb_cli *cli, int argc, char **argv, const envdb_cli_opt *opts,
			envdb_cli_args *pos, int min_pos, int max_pos, envdb_cli_env_ref *ref,
			envdb_ctx **ctx)
{
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, opts, pos, min_pos, max_pos)) != EX_OK)
		return rc;
	if ((rc = envdb_cli_env_ref_parse(cli, ref, pos->v[0])) != EX_OK)
		return rc;
	return envdb_cli_open(cli, ctx, 0);
}
