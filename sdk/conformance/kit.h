/*
 * sdk/conformance/kit.h — internal interfaces of envdb-conformance, the
 * plugin conformance kit: the report (one line per check), the instrumented
 * host it hands to the plugin under test, the wrappers that call into the
 * plugin (borrowed inputs poisoned after each call, guarded output
 * buffers, error-report bookkeeping), and the check suites.
 *
 * The kit is a host program: it loads the plugin through libenvdb's own
 * loader (core/loader.c, with ENVDBI_LOAD_NO_INIT), then creates its own
 * instance with this file's host so that it can see every allocation,
 * every message and every log line.
 */
#ifndef ENVDB_CONFORMANCE_KIT_H
#define ENVDB_CONFORMANCE_KIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <envdb/adapter.h>
#include <envdb/encryptor.h>

/* ------------------------------------------------------------------------ */
/* report.c — the output                                                     */
/* ------------------------------------------------------------------------ */

/** Print from now on to a duplicate of standard output, so that fd 1 can
 * be redirected while the plugin runs.  Call first. */
void kit_output_init(void);
/** Check that the plugin at `path` exports nothing but its entry symbol
 * (symbols.c: the ELF dynamic symbol table). */
void kit_check_exports(const char *path);
/** Point fd 1 at a scratch file while plugin code runs (nested and
 * concurrent calls counted); at the end, a finding for anything that
 * arrived there. */
void kit_stdout_begin(void);
void kit_stdout_end(const char *op);

/** Print "ok - NAME". */
void kit_ok(const char *name, const char *fmt, ...) ENVDB_PRINTF(2, 3);
/** Print "FAIL - NAME: DETAIL". */
void kit_fail(const char *name, const char *fmt, ...) ENVDB_PRINTF(2, 3);
/** Print "skip - NAME: WHY". */
void kit_skip(const char *name, const char *fmt, ...) ENVDB_PRINTF(2, 3);
/** ok when `cond`, otherwise FAIL with the detail; returns cond. */
bool kit_check(bool cond, const char *name, const char *fmt, ...) ENVDB_PRINTF(3, 4);
/** A "# ..." diagnostic line (shown with --verbose). */
void kit_note(const char *fmt, ...) ENVDB_PRINTF(1, 2);
void kit_set_verbose(bool on);
bool kit_verbose(void);
/** Print the closing "N passed, N failed" line; returns the failure count. */
unsigned kit_summary(void);
unsigned kit_failures(void);

/*
 * Findings: contract violations noticed along the way (by the host services
 * or the call wrappers) rather than by one check.  Each category is
 * reported once at the end by kit_findings_report(): ok when nothing was
 * found, else FAIL with the count and the first detail.
 */
enum kit_category {
	KIT_ERRORS,      /* error reporting through host->error */
	KIT_SECRETS,     /* a secret in a message, log line, output or plain memory */
	KIT_OWNERSHIP,   /* a borrowed pointer kept past its call */
	KIT_BUFFERS,     /* buffer protocol: overflow, NUL, len */
	KIT_MEMORY,      /* host->alloc/free balance and misuse */
	KIT_SECURE,      /* host->secure_alloc/secure_free balance and misuse */
	KIT_STATUS,      /* a return value that is not an envdb_status */
	KIT_STDOUT,      /* bytes written to standard output during a call */
	KIT_N_CATEGORIES
};
void kit_finding(enum kit_category cat, const char *fmt, ...) ENVDB_PRINTF(2, 3);
unsigned kit_finding_count(enum kit_category cat);
/** Report every category: "ok - NAME: WHAT" or "FAIL - NAME: N problem(s); first: ...". */
void kit_findings_report(void);

/** A short name for a status ("ENVDB_ERR_EXISTS"), or "status N". */
const char *kit_status_name(int status);
/** Whether `status` is ENVDB_OK or an error code <envdb/status.h> defines
 * (not a range: codes need not stay contiguous). */
bool kit_status_known(int status);

/* ------------------------------------------------------------------------ */
/* host.c — the instrumented host                                            */
/* ------------------------------------------------------------------------ */

/** The host table handed to the plugin (valid for the whole run). */
const envdb_host *kit_host(void);
/** The deployment id of the kit's host (host->deployment_id, db_ref and
 * create request deployment_id). */
extern const char kit_deployment_id[37];
/** A host table announcing a newer minor and a larger struct_size, for the
 * forward-compatibility check. */
const envdb_host *kit_host_newer(void);

/** Secrets: the kit remembers every secret it knows (minted credentials,
 * secret configuration values, plaintexts) and searches every message, log
 * line, output and freed ordinary allocation for them.  `label` says where
 * the secret came from (static string).  Secrets shorter than 6 bytes are
 * not searched (too many false positives). */
void kit_secret_add(const void *data, size_t len, const char *label);
/** The label of the first known secret found in `data`, or NULL. */
const char *kit_secret_find(const void *data, size_t len);
/** Copy of `text` with every known secret replaced by "***" (static
 * buffer of the calling thread; for printing a message safely). */
const char *kit_redact(const char *text);

/** The marker written over borrowed buffers after a call. */
#define KIT_POISON "#POISONED-BY-ENVDB-CONFORMANCE-AFTER-THE-CALL#"
/** True when `text` contains bytes of a poisoned buffer. */
bool kit_poisoned(const char *text, size_t len);

/** Thread-local: what the plugin reported during the current call. */
typedef struct kit_report {
	unsigned count;     /* host->error calls */
	int status;         /* of the last one */
	char native[64];
	char message[1024];
} kit_report;
void kit_report_reset(void);
const kit_report *kit_report_get(void);
/** "STATUS: \"last reported message\"" of the current thread (static
 * buffer of the thread), for the detail of a failed check. */
const char *kit_why(int rc);
/** Search what the plugin said during the current call (every message and
 * log line since the last kit_call_begin on this thread) for the secrets
 * known now: used right after a secret was minted, since the host could not
 * know it yet when the plugin spoke. */
void kit_transcript_scan(const char *op);

/** Thread-local deadline the host's deadline_ms() answers (0: none). */
void kit_set_deadline(int64_t deadline_ms);
int64_t kit_now_ms(void);

/** Memory handed out by the host to the plugin and not yet given back. */
long kit_live_allocs(void);
long kit_live_secure(void);
/** Scan the plugin's live ordinary allocations for known secrets; findings
 * go to KIT_SECRETS with `when` in the detail. */
void kit_scan_live_allocs(const char *when);
/** Release the kit's registries (end of run, after fini). */
void kit_host_cleanup(void);
/** Counters of the whole run. */
unsigned long kit_log_lines(void);
unsigned long kit_error_reports(void);

/** The name of the operation in flight (for the crash handler). */
void kit_set_current_op(const char *op);
const char *kit_current_op(void);

/* Kit-side memory (not counted as the plugin's).  kit_smalloc is wiped on
 * kit_sfree.  Both abort on failure. */
void *kit_xmalloc(size_t n);
char *kit_xstrdup(const char *s);
void *kit_smalloc(size_t n);
void kit_sfree(void *p, size_t n);

/* ------------------------------------------------------------------------ */
/* call.c — calling into the plugin                                          */
/* ------------------------------------------------------------------------ */

/** A borrowed string: a fresh copy the plugin sees during one call, then
 * overwritten with KIT_POISON (kept allocated until the end of the run, so
 * a kept pointer reads poison instead of crashing). */
const char *kit_borrow(const char *s);
/** Poison every string borrowed since the last call (done by kit_call_end). */
void kit_poison_borrowed(void);
/** Release every poisoned buffer (end of run, after fini). */
void kit_graveyard_free(void);
/** Register `p` (n bytes, kit_xmalloc'd) to be poisoned and released like a
 * borrowed string. */
void kit_borrow_raw(void *p, size_t n);
/** Keep `p` (kit_xmalloc'd) allocated, untouched, until kit_graveyard_free:
 * for borrowed structs whose members point to borrowed strings. */
void kit_keep(void *p);

/** An output buffer with a guard zone after cap; secure buffers come from
 * kit secure memory. */
typedef struct kit_buf {
	envdb_buffer b;
	char *orig; /* what b.data was set to */
	size_t cap;
	bool secure;
} kit_buf;
void kit_buf_init(kit_buf *kb, size_t cap, bool secure);
void kit_buf_free(kit_buf *kb);
/** After a call: guard intact, and when rc == 0 the value is NUL-terminated
 * with len < cap (text: no NUL inside).  Findings go to KIT_BUFFERS. */
void kit_buf_verify(kit_buf *kb, int rc, const char *op, const char *what, bool text);
/** True when no byte of the buffer changed since kit_buf_init. */
bool kit_buf_untouched(const kit_buf *kb);

/** Around every call into the plugin: serialize when the plugin is not
 * thread-safe, reset the report, remember the operation; then check the
 * status is an envdb_status and that a failure was reported with that
 * status, and poison the borrowed inputs.  kit_call_end returns rc. */
void kit_call_begin(const char *op);
int kit_call_end(const char *op, int rc);
void kit_set_thread_safe(bool ts);

/* ------------------------------------------------------------------------ */
/* config.c — the plugin's configuration                                     */
/* ------------------------------------------------------------------------ */

typedef struct kit_config_item {
	char *key;
	char *value;     /* for a secret: kit secure memory */
	size_t value_len;
	bool secret;
} kit_config_item;

typedef struct kit_config {
	kit_config_item *items;
	size_t n;
	char *base_dir;
} kit_config;

/** Resolve `<key>_file` / `<key>_env` references of secret keys declared
 * by `desc` into `<key>` (relative files against base_dir); register every
 * secret value with kit_secret_add.  On failure prints a FAIL and returns
 * non-zero. */
int kit_config_resolve(kit_config *out, const envdb_plugin_descriptor *desc,
		       const char *const *keys, const char *const *values, size_t n,
		       const char *base_dir);
void kit_config_free(kit_config *cfg);
/** A fresh envdb_config whose strings are all borrowed (poisoned after
 * kit_call_end), optionally without key `omit`. */
envdb_config *kit_config_borrow(const kit_config *cfg, const char *omit);
/** After init: point every member of a borrowed config at poison (the
 * structs stay allocated until the end of the run). */
void kit_config_retire(envdb_config *c);

/* ------------------------------------------------------------------------ */
/* The suites                                                                */
/* ------------------------------------------------------------------------ */

typedef struct kit_options {
	int threads;          /* concurrency check threads (default 4) */
	int iterations;       /* per thread (default 8) */
	bool key_generate;    /* encryptor: allowed to generate keys */
	bool deadline;        /* remote plugins: deadline check */
} kit_options;

/** descriptor.c: check the descriptor and the ops table (zero-extended
 * copies into *ops_out, sized for the kind).  Returns false when the
 * plugin is unusable (no further checks). */
bool kit_check_descriptor(const envdb_plugin_descriptor *desc, uint32_t kind,
			  const char *expected_name, void *ops_out, size_t ops_size);

/** The i-th declared configuration key, or NULL past the terminator.  The
 * array's stride is its elements' struct_size (the struct may have grown
 * since ABI 1.0), as envdb's loader walks it. */
const envdb_config_key *kit_config_key_at(const envdb_plugin_descriptor *desc, size_t i);

/** init/fini of the kit's instance: instrumented, with borrowed config. */
int kit_instance_init(void **instance, const envdb_plugin_descriptor *desc,
		      const envdb_host *host, const kit_config *cfg, const char *omit);
/** Initialization checks common to both kinds (required keys, newer host).
 * Returns the instance for the suite, or NULL. */
void *kit_init_checks(const envdb_plugin_descriptor *desc, const kit_config *cfg);
/** fini, then memory balances and the findings. */
void kit_fini_checks(const envdb_plugin_descriptor *desc, void *instance);

void kit_run_adapter(const envdb_plugin_descriptor *desc, const envdb_adapter_ops *ops,
		     void *instance, const kit_options *opt);
void kit_run_encryptor(const envdb_plugin_descriptor *desc, const envdb_encryptor_ops *ops,
		       void *instance, const kit_options *opt);

/** A random UUID v4 (37 bytes with NUL). */
void kit_uuid(char out[37]);

#endif /* ENVDB_CONFORMANCE_KIT_H */
