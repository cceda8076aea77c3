/*
 * core/cli.h — what every part of the envdb command shares: the command
 * table row, option parsing, ORG/SLUG parsing, JSON output, error printing
 * and the mapping of envdb statuses to exit statuses (sysexits).
 *
 * Adding a command:
 *   1. write its handler in your own core/cli_<group>.c and declare it
 *      below (section "Handlers");
 *   2. add one row to the dispatch table in core/cli.c (name, subcommand,
 *      handler, argument synopsis, help line) — `envdb --help` lists it;
 *   3. add the file to core_envdb_SOURCES in core/Makefile.inc.
 *
 * A handler receives the arguments after its command words; the global
 * options (--json/-j, --output FORMAT, --quiet/-q, --manifest FILE) and
 * --help have already been taken out wherever they appeared.  It returns an exit status (0, or EX_* from
 * <sysexits.h>, normally via envdb_cli_fail()).  Output conventions:
 *  - with --json, exactly one JSON document goes to stdout
 *    (envdb_cli_json_print(), or envdb_cli_fail() on error); nothing else
 *    is written to stdout;
 *  - without --json, results go to stdout as text (envdb_cli_print();
 *    envdb_cli_note() for a message around a table) and as tables (envdb_cli_table_*: aligned with
 *    --output table, the default; a header line and tab-separated rows
 *    with --output tsv; the id column only with --quiet);
 *  - every object is rendered by its one function below (section
 *    "Objects", core/cli_out.c), whatever the command;
 *  - messages go to stderr as "envdb: <message>" (envdb_cli_error(),
 *    envdb_cli_fail()); they never contain a secret.
 * The CLI uses only the public API (<envdb/envdb.h>).
 */
#ifndef ENVDB_CLI_H
#define ENVDB_CLI_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sysexits.h>

#include <jansson.h>

#include <envdb/envdb.h>

#include "quote.h"

typedef struct envdb_cli_command envdb_cli_command;

/** --output FORMAT (the default: table). */
enum envdb_cli_output {
	ENVDB_CLI_OUT_TABLE, /**< for people: aligned columns with headers, messages */
	ENVDB_CLI_OUT_TSV,   /**< header line, tab-separated rows, \t \n \\ escaped */
	ENVDB_CLI_OUT_JSON   /**< one JSON document (also --json, -j) */
};

/** The state of one run of the command. */
typedef struct envdb_cli {
	const char *manifest_opt;         /**< --manifest FILE, or NULL */
	int output;                       /**< envdb_cli_output */
	bool json;                        /**< output == ENVDB_CLI_OUT_JSON */
	bool quiet;                       /**< --quiet: only ids on stdout */
	bool emitted;                     /**< the JSON document was printed */
	const envdb_cli_command *command; /**< the row being run */
	char manifest_buf[PATH_MAX];      /**< storage for a discovered path */
} envdb_cli;

typedef int (*envdb_cli_handler)(envdb_cli *cli, int argc, char **argv);

/** One row of the dispatch table. */
struct envdb_cli_command {
	const char *name; /**< first word: "key" */
	const char *sub;  /**< second word: "generate", or NULL */
	envdb_cli_handler run;
	const char *args; /**< synopsis after the words: "[--encryptor NAME]" */
	const char *help; /**< one line */
	/** Its options for `envdb COMMAND --help` and `envdb help COMMAND`:
	 * lines "--name VALUE<TAB>what it does", separated by '\n'; NULL when
	 * it has none. */
	const char *flags;
};

/* ------------------------------------------------------------------------ */
/* Options and arguments                                                     */
/* ------------------------------------------------------------------------ */

enum envdb_cli_opt_type {
	ENVDB_CLI_FLAG,    /**< out: bool *, set to true */
	ENVDB_CLI_STRING,  /**< out: const char **, points into argv */
	ENVDB_CLI_INT,     /**< out: int64_t *, decimal, range-checked by the handler */
	ENVDB_CLI_DURATION /**< out: int64_t *, seconds; the one duration grammar
			        (core/duration.h: 90, 90s, 15m, 1h30m, 7d, 1w) */
};

/** One long option, "--name VALUE", "--name=VALUE" or "--name".  A table of
 * them ends with a row whose name is NULL.  An option that takes a value
 * may be given once (twice is a usage error, exit 64); a flag may repeat.
 * A bad value (not an integer, not a duration) is a usage error too. */
typedef struct envdb_cli_opt {
	const char *name; /**< without the dashes: "plugin-dir" */
	int type;         /**< envdb_cli_opt_type */
	void *out;
} envdb_cli_opt;

#define ENVDB_CLI_MAX_ARGS 32

/** Exit status of `envdb reconcile` without --apply when it found work that
 * --apply would do (nothing failed, nothing changed).  Not a sysexits code:
 * like diff(1), 1 means "there are differences". */
#define ENVDB_CLI_EX_PENDING 1

/** Positional arguments, pointing into argv. */
typedef struct envdb_cli_args {
	int n;
	char *v[ENVDB_CLI_MAX_ARGS];
} envdb_cli_args;

/**
 * Parse a handler's arguments: options from `opts` (may be NULL), "--"
 * ends the options, everything else is positional and goes to *pos; there
 * must be between min_pos and max_pos of them.  Returns 0, or EX_USAGE
 * after reporting the problem with the command's synopsis.
 */
int envdb_cli_parse(envdb_cli *cli, int argc, char **argv, const envdb_cli_opt *opts,
		    envdb_cli_args *pos, int min_pos, int max_pos);

/**
 * Confirm a destructive action: true with --yes (`yes`); otherwise, when
 * stdin is a terminal, ask `question` ("... [y/N] ") on /dev/tty and
 * return whether the answer is y or yes.  Returns 0 to go ahead, or
 * EX_USAGE after reporting (no terminal: "pass --yes"; declined: nothing
 * changed).
 */
int envdb_cli_confirm(envdb_cli *cli, bool yes, const char *fmt, ...) ENVDB_PRINTF(3, 4);

/** Progress of a long run on stderr, only when stderr is a terminal, at
 * most every 200 ms: "\r<what>: DONE/TOTAL UNIT (P%), <extra>, R UNIT/s, ETA T".
 * Shared by `migrate v4-to-v5` and `key rewrap`. */
typedef struct envdb_cli_progress {
	bool enabled; /**< stderr is a terminal */
	bool shown;   /**< a line was drawn: envdb_cli_progress_end() ends it */
	int64_t start_ms, last_ms;
} envdb_cli_progress;

void envdb_cli_progress_begin(envdb_cli_progress *p);
/** Draw (rate-limited; always when done == total).  elapsed_ms < 0: measure it. */
void envdb_cli_progress_update(envdb_cli_progress *p, const char *what, size_t done, size_t total,
			       const char *unit, const char *rate_unit, const char *extra,
			       int64_t elapsed_ms);
void envdb_cli_progress_end(envdb_cli_progress *p);

/** An environment reference ORG/SLUG (exactly one '/', both parts
 * non-empty, no whitespace).  The slug pattern itself is checked by the
 * library, which names the rule. */
typedef struct envdb_cli_env_ref {
	char org[256];
	char slug[128];
} envdb_cli_env_ref;

/** Parse `arg` as ORG/SLUG into *out.  Returns 0, or EX_USAGE after
 * reporting. */
int envdb_cli_env_ref_parse(envdb_cli *cli, envdb_cli_env_ref *out, const char *arg);

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * The manifest of this run: --manifest FILE, else $ENVDB_MANIFEST, else
 * ./envdb.yaml when it exists, else ENVDB_SYSCONF_DIR/envdb.yaml when it
 * exists.  Returns 0 with *path set (valid for the run), or EX_CONFIG after
 * reporting that none was found.
 */
int envdb_cli_manifest(envdb_cli *cli, const char **path);

/** envdb_open() on the manifest of this run.  Returns 0 with *ctx set
 * (envdb_close() it), or the exit status after reporting the failure. */
int envdb_cli_open(envdb_cli *cli, envdb_ctx **ctx, unsigned flags);

/** The start every ORG/SLUG command shares: envdb_cli_parse(), then the
 * first positional as ORG/SLUG into *ref, then envdb_cli_open().  Returns 0
 * with *ctx set (envdb_close() it), or the exit status after reporting. */
int envdb_cli_env_begin(envdb_cli *cli, int argc, char **argv, const envdb_cli_opt *opts,
			envdb_cli_args *pos, int min_pos, int max_pos, envdb_cli_env_ref *ref,
			envdb_ctx **ctx);

/* ------------------------------------------------------------------------ */
/* Output and errors                                                         */
/* ------------------------------------------------------------------------ */

/** The exit status for an envdb status: 0, EX_USAGE (64), EX_DATAERR (65),
 * EX_UNAVAILABLE (69), EX_SOFTWARE (70), EX_OSERR (71), EX_IOERR (74),
 * EX_TEMPFAIL (75), EX_NOPERM (77), EX_CONFIG (78).  The one mapping. */
int envdb_cli_exit_status(int status);

/** Print "envdb: <message>" to stderr. */
void envdb_cli_error(envdb_cli *cli, const char *fmt, ...) ENVDB_PRINTF(2, 3);

/** `s` (from argv) escaped for a message (core/quote.c): buf, for the call.
 * CLI_Q(s) gives it a buffer of its own that lives to the end of the
 * statement's block: `envdb_cli_usage(cli, "bad '%s'", CLI_Q(arg))`. */
const char *envdb_cli_quote(char *buf, size_t cap, const char *s);
#define CLI_Q(s) envdb_cli_quote((char[ENVDBI_QUOTE_MAX]){0}, ENVDBI_QUOTE_MAX, (s))
/** Report a usage problem ("envdb: COMMAND: <message>" and the synopsis;
 * with --json also the error document) and return EX_USAGE. */
int envdb_cli_usage(envdb_cli *cli, const char *fmt, ...) ENVDB_PRINTF(2, 3);

/**
 * Report the library's last error for failure `status` (a negative envdb
 * status): the message to stderr, and with --json an error document
 * {"error":{"code","status","message","envdb_status"[,"native_code"]}}
 * (envdb_cli_error_json()) to stdout unless a document was already
 * printed.  Returns the exit status.
 */
int envdb_cli_fail(envdb_cli *cli, int status);

/** The same with a message of the caller instead of the last error. */
int envdb_cli_fail_msg(envdb_cli *cli, int status, const char *fmt, ...) ENVDB_PRINTF(3, 4);

/** Print `doc` (reference stolen) as this run's one JSON document.
 * Returns 0, or EX_SOFTWARE when doc is NULL or a document was already
 * printed. */
int envdb_cli_json_print(envdb_cli *cli, json_t *doc);

/** printf to stdout: the text of a command without a table (a no-op with
 * --json and --quiet). */
void envdb_cli_print(envdb_cli *cli, const char *fmt, ...) ENVDB_PRINTF(2, 3);

/** printf to stdout in table mode only: a message around a table, which
 * --output tsv leaves out. */
void envdb_cli_note(envdb_cli *cli, const char *fmt, ...) ENVDB_PRINTF(2, 3);

/** With --quiet, print `id` on its own line; true when quiet (the caller
 * prints nothing else). */
bool envdb_cli_quiet_id(envdb_cli *cli, const char *id);

/* ------------------------------------------------------------------------ */
/* Objects (core/cli_out.c): the one JSON rendering and table row of each    */
/* kind of object, for every command.  Times are ISO 8601 UTC strings.       */
/* ------------------------------------------------------------------------ */

/** "2026-12-03T13:55:25Z" into buf, "-" when t <= 0. */
const char *envdb_cli_time_text(char *buf, size_t cap, int64_t t);
/** The same as a JSON string; null when t <= 0. */
json_t *envdb_cli_time_json(int64_t t);
/** s as a JSON string, null when NULL. */
json_t *envdb_cli_str_json(const char *s);
/** A comma-separated id list as a JSON array of strings. */
json_t *envdb_cli_id_list_json(const char *csv);
/** The machine-readable name of an envdb status ("not_found", ...). */
const char *envdb_cli_error_code(int status);
/** The error object {"code","status","message","envdb_status"[,"native_code"]}. */
json_t *envdb_cli_error_json(const char *code, int exit_status, int envdb_status,
			     const char *message, const char *native);

json_t *envdb_cli_env_json(const envdb_environment *e); /**< null when e is NULL */
json_t *envdb_cli_db_json(const envdb_database *d);
json_t *envdb_cli_cred_json(const envdb_credential *c);
json_t *envdb_cli_member_json(const envdb_member *m);
json_t *envdb_cli_key_json(const char *id, bool current, int64_t created_at);
json_t *envdb_cli_violation_json(const envdb_violation *v);

/** A table: headers (NULL-terminated), id_col the column --quiet prints. */
typedef struct envdb_cli_table envdb_cli_table;
envdb_cli_table *envdb_cli_table_new(size_t id_col, const char *const *headers);
/** One row of as many cells as headers (NULL or "" shows as "-"). */
void envdb_cli_table_row(envdb_cli_table *t, const char *const *cells);
void envdb_cli_table_rowf(envdb_cli_table *t, ...);
size_t envdb_cli_table_rows(const envdb_cli_table *t);
/** Print t in the run's format (nothing with --json) and free it. */
int envdb_cli_table_print(envdb_cli *cli, envdb_cli_table *t);
void envdb_cli_table_free(envdb_cli_table *t);

envdb_cli_table *envdb_cli_env_table(void);
void envdb_cli_env_row(envdb_cli_table *t, const envdb_environment *e);
envdb_cli_table *envdb_cli_cred_table(void);
void envdb_cli_cred_row(envdb_cli_table *t, const envdb_credential *c);
envdb_cli_table *envdb_cli_member_table(void);
void envdb_cli_member_row(envdb_cli_table *t, const envdb_member *m);
/** FIELD/VALUE rows for one object (env show, resolve). */
envdb_cli_table *envdb_cli_field_table(void);

/* ------------------------------------------------------------------------ */
/* Handlers (each group in its own file)                                     */
/* ------------------------------------------------------------------------ */

/* core/cli_host.c */
int envdb_cli_init(envdb_cli *cli, int argc, char **argv);
int envdb_cli_plugins(envdb_cli *cli, int argc, char **argv);
int envdb_cli_manifest_check(envdb_cli *cli, int argc, char **argv);
int envdb_cli_key_list(envdb_cli *cli, int argc, char **argv);
int envdb_cli_key_generate(envdb_cli *cli, int argc, char **argv);
int envdb_cli_key_rotate(envdb_cli *cli, int argc, char **argv);

/* core/cli_env.c */
int envdb_cli_org_list(envdb_cli *cli, int argc, char **argv);
int envdb_cli_org_show(envdb_cli *cli, int argc, char **argv);
int envdb_cli_org_provision(envdb_cli *cli, int argc, char **argv);
int envdb_cli_env_provision(envdb_cli *cli, int argc, char **argv);
int envdb_cli_env_list(envdb_cli *cli, int argc, char **argv);
int envdb_cli_env_show(envdb_cli *cli, int argc, char **argv);
int envdb_cli_env_archive(envdb_cli *cli, int argc, char **argv);
int envdb_cli_env_unarchive(envdb_cli *cli, int argc, char **argv);
int envdb_cli_cred_mint(envdb_cli *cli, int argc, char **argv);
int envdb_cli_env_delete(envdb_cli *cli, int argc, char **argv);
int envdb_cli_cred_rotate(envdb_cli *cli, int argc, char **argv);
int envdb_cli_cred_complete(envdb_cli *cli, int argc, char **argv);
int envdb_cli_cred_list(envdb_cli *cli, int argc, char **argv);
int envdb_cli_cred_revoke(envdb_cli *cli, int argc, char **argv);
int envdb_cli_resolve(envdb_cli *cli, int argc, char **argv);
int envdb_cli_reconcile(envdb_cli *cli, int argc, char **argv);
int envdb_cli_key_rewrap(envdb_cli *cli, int argc, char **argv);

/* core/cli_store.c */
int envdb_cli_schema(envdb_cli *cli, int argc, char **argv);
int envdb_cli_check(envdb_cli *cli, int argc, char **argv);
int envdb_cli_backup(envdb_cli *cli, int argc, char **argv);
int envdb_cli_restore(envdb_cli *cli, int argc, char **argv);
int envdb_cli_store_copy(envdb_cli *cli, int argc, char **argv);
int envdb_cli_member_add(envdb_cli *cli, int argc, char **argv);
int envdb_cli_member_remove(envdb_cli *cli, int argc, char **argv);
int envdb_cli_member_list(envdb_cli *cli, int argc, char **argv);

/* core/cli_migrate.c */
int envdb_cli_migrate_v4_to_v5(envdb_cli *cli, int argc, char **argv);
int envdb_cli_migrate_wipe(envdb_cli *cli, int argc, char **argv);

#endif /* ENVDB_CLI_H */
