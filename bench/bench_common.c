/*
 * bench/bench_common.c — the common harness of `make bench` (see bench.h):
 * timing, repetition, statistics, the result rows, the table and the JSON
 * fragment each benchmark program writes, and small helpers (temporary
 * directories, resident memory, machine description).
 */
#include "config.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <envdb/envdb.h>

#include "bench.h"

static const char *program_name = "bench";
static json_t *rows;  /* array of result objects */
static json_t *notes; /* array of strings */
static char *skipped;

double bench_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

long bench_env_long(const char *name, long dflt)
{
	const char *v = getenv(name);
	char *end;
	long n;

	if (v == NULL || *v == '\0')
		return dflt;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || n <= 0)
		return dflt;
	return n;
}

int bench_runs(int dflt)
{
	long n = bench_env_long("ENVDB_BENCH_RUNS", dflt);

	return n >= 1 && n <= 1000 ? (int)n : dflt;
}

int bench_quick(void)
{
	const char *v = getenv("ENVDB_BENCH_QUICK");

	return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

bench_stats bench_stats_of(const double *v, int n)
{
	bench_stats s = {0, 0, 0, 0};
	double *c;

	if (n <= 0)
		return s;
	c = malloc((size_t)n * sizeof(*c));
	if (c == NULL)
		return s;
	memcpy(c, v, (size_t)n * sizeof(*c));
	qsort(c, (size_t)n, sizeof(*c), cmp_double);
	s.n = n;
	s.min = c[0];
	s.max = c[n - 1];
	s.median = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
	free(c);
	return s;
}

int bench_repeat(bench_stats *out, int warmup, int runs, bench_fn fn, void *arg)
{
	double *v = calloc((size_t)(runs > 0 ? runs : 1), sizeof(*v));
	int i, rc = 0;

	memset(out, 0, sizeof(*out));
	if (v == NULL)
		return -1;
	for (i = 0; i < warmup && rc == 0; i++)
		if (fn(arg, -1 - i) < 0)
			rc = -1;
	for (i = 0; i < runs && rc == 0; i++)
		if ((v[i] = fn(arg, i)) < 0)
			rc = -1;
	if (rc == 0)
		*out = bench_stats_of(v, runs);
	free(v);
	return rc;
}

int bench_pair(bench_stats *m, bench_stats *f, int warmup, int runs, bench_fn measured,
	       void *marg, bench_fn floor_fn, void *farg)
{
	double *vm = calloc((size_t)(runs > 0 ? runs : 1), sizeof(*vm));
	double *vf = calloc((size_t)(runs > 0 ? runs : 1), sizeof(*vf));
	int i, rc = 0;

	memset(m, 0, sizeof(*m));
	memset(f, 0, sizeof(*f));
	if (vm == NULL || vf == NULL)
		rc = -1;
	for (i = 0; i < warmup && rc == 0; i++)
		if (floor_fn(farg, -1 - i) < 0 || measured(marg, -1 - i) < 0)
			rc = -1;
	for (i = 0; i < runs && rc == 0; i++) {
		if (i % 2 == 0) {
			if ((vm[i] = measured(marg, i)) < 0 || (vf[i] = floor_fn(farg, i)) < 0)
				rc = -1;
		} else {
			if ((vf[i] = floor_fn(farg, i)) < 0 || (vm[i] = measured(marg, i)) < 0)
				rc = -1;
		}
	}
	if (rc == 0) {
		*m = bench_stats_of(vm, runs);
		*f = bench_stats_of(vf, runs);
	}
	free(vm);
	free(vf);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Results                                                                   */
/* ------------------------------------------------------------------------ */

void bench_begin(const char *program)
{
	program_name = program;
	rows = json_array();
	notes = json_array();
	/* Flush each line: the driver interleaves several programs' output. */
	setvbuf(stdout, NULL, _IOLBF, 0);
}

static json_t *stats_json(const bench_stats *s)
{
	return json_pack("{s:f, s:f, s:f, s:i}", "median", s->median, "min", s->min, "max",
			 s->max, "runs", s->n);
}

int bench_ratio(const char *id, const char *title, const char *unit, const bench_stats *value,
		const bench_stats *ref, const char *ref_label, const char *ref_does,
		double max_ratio)
{
	double ratio = ref->median > 0 ? value->median / ref->median : 0;
	int met = max_ratio <= 0 || (ref->median > 0 && ratio <= max_ratio);
	json_t *row = stats_json(value);

	json_object_set_new(row, "id", json_string(id));
	json_object_set_new(row, "program", json_string(program_name));
	json_object_set_new(row, "title", json_string(title));
	json_object_set_new(row, "unit", json_string(unit));
	json_object_set_new(row, "reference",
			    json_pack("{s:s, s:s, s:f, s:f, s:f, s:i}", "label", ref_label, "does",
				      ref_does ? ref_does : "", "median", ref->median, "min",
				      ref->min, "max", ref->max, "runs", ref->n));
	json_object_set_new(row, "ratio", json_real(ratio));
	if (max_ratio > 0) {
		json_object_set_new(row, "target", json_pack("{s:s, s:f}", "kind", "ratio_max",
							     "value", max_ratio));
		json_object_set_new(row, "met", json_boolean(met));
	} else {
		json_object_set_new(row, "target", json_null());
		json_object_set_new(row, "met", json_null());
	}
	json_array_append_new(rows, row);
	printf("  %s: %s %.4g %s (min %.4g, max %.4g); %s %.4g; ratio %.2fx%s\n", id, title,
	       value->median, unit, value->min, value->max, ref_label, ref->median, ratio,
	       max_ratio > 0 ? (met ? " (target met)" : " (target MISSED)") : "");
	return met;
}

int bench_value(const char *id, const char *title, const char *unit, const bench_stats *value,
		int target_kind, double target, const char *note)
{
	int met = target_kind == BENCH_NO_TARGET ||
		  (target_kind == BENCH_AT_LEAST ? value->median >= target
						 : value->median <= target);
	json_t *row = stats_json(value);

	json_object_set_new(row, "id", json_string(id));
	json_object_set_new(row, "program", json_string(program_name));
	json_object_set_new(row, "title", json_string(title));
	json_object_set_new(row, "unit", json_string(unit));
	json_object_set_new(row, "reference", json_null());
	json_object_set_new(row, "ratio", json_null());
	if (target_kind != BENCH_NO_TARGET) {
		json_object_set_new(row, "target",
				    json_pack("{s:s, s:f}", "kind",
					      target_kind == BENCH_AT_LEAST ? "at_least" : "at_most",
					      "value", target));
		json_object_set_new(row, "met", json_boolean(met));
	} else {
		json_object_set_new(row, "target", json_null());
		json_object_set_new(row, "met", json_null());
	}
	if (note != NULL)
		json_object_set_new(row, "note", json_string(note));
	json_array_append_new(rows, row);
	printf("  %s: %s %.4g %s (min %.4g, max %.4g)%s\n", id, title, value->median, unit,
	       value->min, value->max,
	       target_kind != BENCH_NO_TARGET ? (met ? " (target met)" : " (target MISSED)") : "");
	return met;
}

void bench_syncs(double per_op, double ref_per_op)
{
	json_t *row = json_array_get(rows, json_array_size(rows) - 1);

	if (row == NULL)
		return;
	json_object_set_new(row, "fsync_per_op", json_real(per_op));
	json_object_set_new(row, "reference_fsync_per_op",
			    ref_per_op >= 0 ? json_real(ref_per_op) : json_null());
	if (ref_per_op >= 0)
		printf("  %s: fsync+fdatasync per operation %.2f (reference %.2f)\n",
		       json_string_value(json_object_get(row, "id")), per_op, ref_per_op);
	else
		printf("  %s: fsync+fdatasync per operation %.2f\n",
		       json_string_value(json_object_get(row, "id")), per_op);
}

void bench_note(const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	json_array_append_new(notes, json_string(buf));
	printf("  note: %s\n", buf);
}

void bench_skipped(const char *why)
{
	free(skipped);
	skipped = strdup(why);
	bench_note("%s: skipped: %s", program_name, why);
}

int bench_finish(void)
{
	const char *dir = getenv("ENVDB_BENCH_RESULTS_DIR");
	json_t *doc;
	char path[4096];
	int rc = 0;

	doc = json_pack("{s:s, s:o, s:o}", "program", program_name, "results", rows, "notes",
			notes);
	json_object_set_new(doc, "skipped", skipped ? json_string(skipped) : json_null());
	printf("\n");
	bench_table_print(stdout, rows);
	bench_table_print_references(stdout, rows);
	if (dir != NULL && *dir != '\0') {
		snprintf(path, sizeof(path), "%s/%s.json", dir, program_name);
		if (json_dump_file(doc, path, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) != 0) {
			fprintf(stderr, "%s: cannot write %s\n", program_name, path);
			rc = 2;
		}
	}
	json_decref(doc);
	rows = notes = NULL;
	free(skipped);
	skipped = NULL;
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

int bench_mkdtemp(char *out, size_t cap, const char *base, const char *tag)
{
	if (base == NULL) {
		base = getenv("TMPDIR");
		if (base == NULL || *base == '\0')
			base = "/tmp";
	}
	if ((size_t)snprintf(out, cap, "%s/envdb-bench-%s-XXXXXX", base, tag) >= cap) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return mkdtemp(out) != NULL ? 0 : -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void bench_rmtree(const char *dir)
{
	const char *keep = getenv("ENVDB_BENCH_KEEP");

	if (dir == NULL || *dir == '\0')
		return;
	if (keep != NULL && *keep != '\0' && strcmp(keep, "0") != 0) {
		printf("  (kept %s)\n", dir);
		return;
	}
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int bench_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	if (fputs(text, f) < 0) {
		fclose(f);
		return -1;
	}
	return fclose(f) == 0 ? 0 : -1;
}

void bench_fs_type(char *out, size_t cap, const char *path)
{
	struct statfs s;

	if (statfs(path, &s) != 0) {
		snprintf(out, cap, "unknown");
		return;
	}
	switch ((unsigned long)s.f_type) {
	case 0xEF53UL:
		snprintf(out, cap, "ext4");
		break;
	case 0x01021994UL:
		snprintf(out, cap, "tmpfs");
		break;
	case 0x58465342UL:
		snprintf(out, cap, "xfs");
		break;
	case 0x9123683EUL:
		snprintf(out, cap, "btrfs");
		break;
	case 0x794c7630UL:
		snprintf(out, cap, "overlayfs");
		break;
	default:
		snprintf(out, cap, "0x%lx", (unsigned long)s.f_type);
	}
}

unsigned long long bench_rand(void)
{
	static unsigned long long x = 0x9e3779b97f4a7c15ULL;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	return x * 0x2545f4914f6cdd1dULL;
}

size_t bench_rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f == NULL)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

void bench_die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", program_name, what, envdb_error_last()->message);
	exit(2);
}

void bench_manifest(char *out, size_t cap, const char *dir, const char *name, const char *extra)
{
	char text[4096];

	snprintf(text, sizeof(text),
		 "version: 1\n"
		 "control_plane: control.db\n"
		 "defaults:\n"
		 "  driver: sqlite\n"
		 "  encryptor: kms\n"
		 "legacy:\n"
		 "  register_shim: false\n"
		 "plugins:\n"
		 "  - name: sqlite\n"
		 "    kind: adapter\n"
		 "    config:\n"
		 "      base_dir: envs\n"
		 "  - name: kms\n"
		 "    kind: encryptor\n"
		 "    config:\n"
		 "      keyring_dir: keyring\n"
		 "%s",
		 extra ? extra : "");
	if ((size_t)snprintf(out, cap, "%s/%s", dir, name) >= cap || bench_write_file(out, text)) {
		fprintf(stderr, "%s: cannot write manifest %s/%s\n", program_name, dir, name);
		exit(2);
	}
}

static int has_current(void *cb_ctx, const char *key_id, int is_current, int64_t created_at)
{
	(void)key_id;
	(void)created_at;
	if (is_current)
		*(int *)cb_ctx = 1;
	return 0;
}

void bench_init_store(const char *manifest)
{
	envdb_ctx *ctx = NULL;
	char *key = NULL;
	int current = 0;

	if (envdb_open(&ctx, manifest, ENVDB_OPEN_CREATE) != 0)
		bench_die("open the control plane");
	if (envdb_key_list(ctx, "kms", has_current, &current) != 0)
		bench_die("list keys");
	if (!current && envdb_key_generate(&key, ctx, "kms", 1) != 0)
		bench_die("generate a key");
	envdb_free(key);
	envdb_close(ctx);
}

void bench_cpu_model(char *out, size_t cap)
{
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(out, cap, "unknown");
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *colon = strchr(line, ':');

		if (strncmp(line, "model name", 10) != 0 || colon == NULL)
			continue;
		colon++;
		while (*colon == ' ' || *colon == '\t')
			colon++;
		colon[strcspn(colon, "\n")] = '\0';
		snprintf(out, cap, "%s", colon);
		break;
	}
	fclose(f);
}

int bench_cores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (int)n : 1;
}

/* ------------------------------------------------------------------------ */
/* The table                                                                 */
/* ------------------------------------------------------------------------ */

static void fmt_num(char *out, size_t cap, double v)
{
	double a = v < 0 ? -v : v;

	if (a == 0)
		snprintf(out, cap, "0");
	else if (a >= 1e6)
		snprintf(out, cap, "%.2fM", v / 1e6);
	else if (a >= 1e4)
		snprintf(out, cap, "%.0f", v);
	else if (a >= 100)
		snprintf(out, cap, "%.1f", v);
	else if (a >= 10)
		snprintf(out, cap, "%.2f", v);
	else
		snprintf(out, cap, "%.3f", v);
}

static double num(const json_t *o, const char *key)
{
	return json_number_value(json_object_get(o, key));
}

static const char *str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

void bench_table_print(FILE *out, const struct json_t *rows_in)
{
	const json_t *rs = rows_in;
	size_t i, n_met = 0, n_missed = 0;
	char missed[1024] = "";

	fprintf(out, "%-46s %9s %9s %9s %-10s %-18s %7s %-12s %-11s %s\n", "workload", "median",
		"min", "max", "unit", "reference (median)", "ratio", "target", "fsync/op", "");
	for (i = 0; i < json_array_size(rs); i++) {
		const json_t *r = json_array_get(rs, i);
		const json_t *ref = json_object_get(r, "reference");
		const json_t *tg = json_object_get(r, "target");
		const json_t *met = json_object_get(r, "met");
		char med[32], mn[32], mx[32], refs[64] = "", ratio[32] = "", target[48] = "",
							  tv[32], syncs[48] = "";

		fmt_num(med, sizeof(med), num(r, "median"));
		fmt_num(mn, sizeof(mn), num(r, "min"));
		fmt_num(mx, sizeof(mx), num(r, "max"));
		if (json_is_object(ref)) {
			char rv[32];

			fmt_num(rv, sizeof(rv), num(ref, "median"));
			snprintf(refs, sizeof(refs), "%s %s", str(ref, "label"), rv);
			if (num(r, "ratio") >= 0.1 || num(r, "ratio") == 0)
				snprintf(ratio, sizeof(ratio), "%.2fx", num(r, "ratio"));
			else
				snprintf(ratio, sizeof(ratio), "%.2f%%", 100 * num(r, "ratio"));
		}
		if (json_is_object(tg)) {
			const char *kind = str(tg, "kind");

			fmt_num(tv, sizeof(tv), num(tg, "value"));
			if (strcmp(kind, "ratio_max") == 0 && num(tg, "value") < 0.1)
				snprintf(target, sizeof(target), "<= %.0f%%", 100 * num(tg, "value"));
			else if (strcmp(kind, "ratio_max") == 0)
				snprintf(target, sizeof(target), "<= %.2fx", num(tg, "value"));
			else
				snprintf(target, sizeof(target), "%s %s",
					 strcmp(kind, "at_least") == 0 ? ">=" : "<=", tv);
		}
		if (json_is_number(json_object_get(r, "fsync_per_op"))) {
			if (json_is_number(json_object_get(r, "reference_fsync_per_op")))
				snprintf(syncs, sizeof(syncs), "%.2f (%.2f)", num(r, "fsync_per_op"),
					 num(r, "reference_fsync_per_op"));
			else
				snprintf(syncs, sizeof(syncs), "%.2f", num(r, "fsync_per_op"));
		}
		if (json_is_true(met))
			n_met++;
		else if (json_is_false(met)) {
			n_missed++;
			if (strlen(missed) + strlen(str(r, "id")) + 3 < sizeof(missed)) {
				if (*missed)
					strcat(missed, ", ");
				strcat(missed, str(r, "id"));
			}
		}
		fprintf(out, "%-46.46s %9s %9s %9s %-10s %-18s %7s %-12s %-11s %s\n", str(r, "title"),
			med, mn, mx, str(r, "unit"), refs, ratio, target, syncs,
			json_is_true(met) ? "met" : json_is_false(met) ? "MISSED" : "");
	}
	fprintf(out, "targets: %zu met, %zu missed%s%s\n", n_met, n_missed, n_missed ? ": " : "",
		missed);
}

void bench_table_print_references(FILE *out, const struct json_t *rows_in)
{
	const json_t *rs = rows_in;
	size_t i;

	for (i = 0; i < json_array_size(rs); i++) {
		const json_t *r = json_array_get(rs, i);
		const json_t *ref = json_object_get(r, "reference");

		if (json_is_object(ref) && *str(ref, "does"))
			fprintf(out, "  [%s] %s: %s\n", str(r, "id"), str(ref, "label"),
				str(ref, "does"));
		if (*str(r, "note"))
			fprintf(out, "  [%s] %s\n", str(r, "id"), str(r, "note"));
	}
}
