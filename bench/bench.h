/*
 * bench/bench.h — the common harness of `make bench` (bench/bench_common.c):
 * timing with CLOCK_MONOTONIC, repeated and interleaved runs, median / min /
 * max, and the result rows every benchmark program reports.
 *
 * A benchmark program calls bench_begin(), measures, records one row per
 * figure (bench_ratio() for a figure against its floor or another
 * reference, bench_value() for a figure with an absolute target or none)
 * and returns bench_finish().  bench_finish() prints the program's table and,
 * when ENVDB_BENCH_RESULTS_DIR is set (bench/run-bench.sh sets it), writes
 * the rows as JSON to ENVDB_BENCH_RESULTS_DIR/PROGRAM.json; bench/bench_report
 * merges those into one table and bench/results.json with the machine and
 * the commit.
 *
 * Every floor row carries the exact description of what its floor does: it
 * is printed under the table and stored in the JSON.
 *
 * Environment: ENVDB_BENCH_RUNS (runs per workload; each program has its own
 * default), ENVDB_BENCH_QUICK=1 (smaller sizes, for a smoke run),
 * ENVDB_BENCH_KEEP=1 (keep temporary directories), TMPDIR.
 *
 * Not thread-safe: one thread records results.
 */
#ifndef ENVDB_BENCH_H
#define ENVDB_BENCH_H

#include <stddef.h>
#include <stdio.h>

#include <envdb/status.h>

/** Seconds on CLOCK_MONOTONIC. */
double bench_now(void);

/** ENVDB_BENCH_RUNS when set to 1..1000, else `dflt`. */
int bench_runs(int dflt);
/** The integer environment variable `name` when set and > 0, else `dflt`. */
long bench_env_long(const char *name, long dflt);
/** 1 when ENVDB_BENCH_QUICK is set to a non-empty value other than "0". */
int bench_quick(void);

typedef struct bench_stats {
	double median, min, max;
	int n; /* samples; 0: no figure */
} bench_stats;

/** Median, minimum and maximum of v[0..n) (v is not reordered). */
bench_stats bench_stats_of(const double *v, int n);

/** One timed run: returns the figure of run number `run` (0-based), e.g.
 * seconds per operation.  A negative return aborts the benchmark. */
typedef double (*bench_fn)(void *arg, int run);

/** Run fn `runs` times (after `warmup` untimed runs); *out receives the
 * statistics.  Returns 0, or -1 when a run failed. */
int bench_repeat(bench_stats *out, int warmup, int runs, bench_fn fn, void *arg);

/** Run `measured` and `floor_fn` `runs` times each, interleaved and
 * alternating which goes first (so warming up, page cache and a busy
 * machine favour neither), after `warmup` untimed runs of each.  Returns 0,
 * or -1 when a run failed. */
int bench_pair(bench_stats *m, bench_stats *f, int warmup, int runs, bench_fn measured,
	       void *marg, bench_fn floor_fn, void *farg);

/* ------------------------------------------------------------------------ */
/* Results                                                                   */
/* ------------------------------------------------------------------------ */

/** Start recording the results of program `program` ("bench_resolve"). */
void bench_begin(const char *program);

/**
 * A figure against a reference (its floor, or the same figure at another
 * size).  `id` is a short stable key ("provision"), `title` what is
 * measured, `unit` the unit of both medians ("ms/env"), `ref_label` names
 * the reference ("floor", "at 1,000"), `ref_does` says exactly what the
 * reference does (printed and stored).  The ratio is value/ref of the
 * medians; the target is met when ratio <= max_ratio (max_ratio <= 0: no
 * target).  Returns 1 when the target is met or absent, 0 when missed.
 */
int bench_ratio(const char *id, const char *title, const char *unit, const bench_stats *value,
		const bench_stats *ref, const char *ref_label, const char *ref_does,
		double max_ratio);

enum bench_target {
	BENCH_NO_TARGET = 0,
	BENCH_AT_LEAST, /* met when the median >= target */
	BENCH_AT_MOST   /* met when the median <= target */
};

/** A figure with an absolute target (or none).  `note` (may be NULL) is
 * printed with it.  Returns 1 when met or absent, 0 when missed. */
int bench_value(const char *id, const char *title, const char *unit, const bench_stats *value,
		int target_kind, double target, const char *note);

/** Attach the disk syncs (fsync + fdatasync, tests/sync_count.c) per
 * operation to the row just recorded, and those of its reference
 * (ref_per_op < 0: none); printed in the table's fsync/op column and
 * stored as fsync_per_op, reference_fsync_per_op. */
void bench_syncs(double per_op, double ref_per_op);

/** A line of context printed after the table (and stored): how a state was
 * built, what was skipped and why. */
void bench_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** Mark the program skipped (no server, ...): its notes say why. */
void bench_skipped(const char *why);

/** Print the table, write the JSON fragment; returns 0 (the exit status:
 * missed targets are reported, not errors) or 2 when the fragment could
 * not be written. */
int bench_finish(void);

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/** Make a fresh directory "<base>/envdb-bench-<tag>-XXXXXX" (base NULL:
 * $TMPDIR or /tmp) into out.  Returns 0 or -1 (errno set). */
int bench_mkdtemp(char *out, size_t cap, const char *base, const char *tag);
/** Remove `dir` and everything under it, unless ENVDB_BENCH_KEEP is set. */
void bench_rmtree(const char *dir);
/** Write `text` to `path` (created or truncated).  0 or -1. */
int bench_write_file(const char *path, const char *text);
/** The file-system type of `path` ("ext4", "tmpfs", "xfs", ... or a hex
 * magic), into out. */
void bench_fs_type(char *out, size_t cap, const char *path);
/** A deterministic pseudo-random sequence (xorshift64*, fixed seed): the
 * same order of operations in every run and every program. */
unsigned long long bench_rand(void);
/** Resident set size of this process in bytes (0 if unknown). */
size_t bench_rss_bytes(void);
/** Exit with status 2 after printing "PROGRAM: WHAT: the last envdb error". */
void bench_die(const char *what) __attribute__((noreturn));

/**
 * Write the manifest DIR/NAME for the sqlite adapter and the kms encryptor:
 * control plane DIR/control.db, environment files in DIR/envs, keyring
 * DIR/keyring, the legacy shim off, and `extra` (YAML top-level keys, may
 * be NULL) appended.  Its path goes to out.  Exits on failure.
 */
void bench_manifest(char *out, size_t cap, const char *dir, const char *name, const char *extra);
/** Create the control plane of `manifest` and a current kms key (when the
 * keyring has none).  Exits on failure. */
void bench_init_store(const char *manifest);

/** Machine and commit, as bench_report stores them. */
void bench_cpu_model(char *out, size_t cap);
int bench_cores(void);

/* ------------------------------------------------------------------------ */
/* The table (also used by bench/bench_report.c)                             */
/* ------------------------------------------------------------------------ */

struct json_t;
/** Print result rows (a JSON array of rows as bench_finish() writes them)
 * as the table, with the count of met and missed targets. */
void bench_table_print(FILE *out, const struct json_t *rows);
/** Print what each row's reference (floor) does, and each row's note. */
void bench_table_print_references(FILE *out, const struct json_t *rows);

#endif /* ENVDB_BENCH_H */
