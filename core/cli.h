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
 * options (--json, --manifest FILE) and --help have already been taken out
 * wherever they appeared.  It returns an exit status (0, or EX_* from
 * <sysexits.h>, normally via envdb_cli_fail()).  Output conventions:
 *  - with --json, exactly one JSON document goes to stdout
 *    (envdb_cli_json_print(), or envdb_cli_fail() on error); nothing else
 *    is written to stdout;
 *  - without --json, results go to stdout as text (envdb_cli_print());
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

/** The state of one run of the command. */
typedef struct envdb_cli {
	const char *manifest_opt;         /**< --manifest FILE, or NULL */
	bool json;                        /**< --json */
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
};

/* ------------------------------------------------------------------------ */
/* Options and arguments                                                     */
/* ------------------------------------------------------------------------ */

enum envdb_cli_opt_type {
	ENVDB_CLI_FLAG,   /**< out: bool *, set to true */
	ENVDB_CLI_STRING, /**< out: const char **, points into argv */
	ENVDB_CLI_INT     /**< out: int64_t *, decimal, range-checked by the handler */
};

/** One long option, "--name VALUE", "--name=VALUE" or "--name".  A table of
 * them ends with a row whose name is NULL. */
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
 * {"error":{"status","code","exit","message","native_code"}} to stdout
 * unless a document was already printed.  Returns the exit status.
 */
int envdb_cli_fail(envdb_cli *cli, int status);

/** The same with a message of the caller instead of the last error. */
int envdb_cli_fail_msg(envdb_cli *cli, int status, const char *fmt, ...) ENVDB_PRINTF(3, 4);

/** Print `doc` (reference stolen) as this run's one JSON document.
 * Returns 0, or EX_SOFTWARE when doc is NULL or a document was already
 * printed. */
int envdb_cli_json_print(envdb_cli *cli, json_t *doc);

/** printf to stdout, only in text mode (a no-op with --json). */
void envdb_cli_print(envdb_cli *cli, const char *fmt, ...) ENVDB_PRINTF(2, 3);

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
