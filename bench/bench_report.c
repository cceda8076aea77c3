/*
 * bench/bench_report.c — the last step of `make bench`: merges the JSON
 * fragments the benchmark programs wrote (bench_finish() in
 * bench/bench_common.c) into one table on stdout and one JSON document,
 * with the machine (CPU model, cores, memory, kernel) and the commit.
 *
 * Usage: bench_report RESULTS_DIR OUT_JSON ELAPSED_SECONDS COMMAND PROGRAM...
 * Exit status: 0 when every target was met, 1 when one was missed, 2 when a
 * fragment could not be read or the document not written.
 *
 * JSON: {"machine": {"cpu", "cores", "memory_mb", "kernel"}, "commit",
 * "date", "command", "elapsed_s", "programs": [{"program", "skipped",
 * "notes"}], "results": [{"id", "program", "title", "unit", "median", "min",
 * "max", "runs", "reference": {"label", "does", "median", "min", "max",
 * "runs"} | null, "ratio" | null, "target": {"kind": "ratio_max" |
 * "at_least" | "at_most", "value"} | null, "met": bool | null, "note"?}]}
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bench.h"

int main(int argc, char **argv)
{
	json_t *doc, *results = json_array(), *programs = json_array();
	char cpu[256], date[64], kernel[300] = "unknown", path[4096];
	const char *commit = getenv("ENVDB_BENCH_COMMIT");
	struct utsname u;
	time_t now = time(NULL);
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	size_t i, n_missed = 0;
	int a, rc = 0;

	if (argc < 5) {
		fprintf(stderr, "usage: bench_report RESULTS_DIR OUT_JSON ELAPSED_S COMMAND "
				"PROGRAM...\n");
		return 2;
	}
	bench_cpu_model(cpu, sizeof(cpu));
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	if (uname(&u) == 0)
		snprintf(kernel, sizeof(kernel), "%s %s %s", u.sysname, u.release, u.machine);
	for (a = 5; a < argc; a++) {
		json_error_t err;
		json_t *frag, *rs, *r;

		snprintf(path, sizeof(path), "%s/%s.json", argv[1], argv[a]);
		frag = json_load_file(path, 0, &err);
		if (frag == NULL) {
			fprintf(stderr, "bench_report: %s: %s\n", path, err.text);
			json_array_append_new(programs, json_pack("{s:s, s:s, s:[]}", "program", argv[a],
								  "skipped", "failed: no results",
								  "notes"));
			rc = 2;
			continue;
		}
		rs = json_object_get(frag, "results");
		for (i = 0; i < json_array_size(rs); i++) {
			r = json_array_get(rs, i);
			json_array_append(results, r);
			if (json_is_false(json_object_get(r, "met")))
				n_missed++;
		}
		json_array_append_new(programs,
				      json_pack("{s:s, s:O, s:O}", "program", argv[a], "skipped",
						json_object_get(frag, "skipped") ? json_object_get(frag, "skipped")
										 : json_null(),
						"notes", json_object_get(frag, "notes")));
		json_decref(frag);
	}
	doc = json_pack("{s:{s:s, s:i, s:I, s:s}, s:s, s:s, s:s, s:I, s:o, s:o}", "machine", "cpu",
			cpu, "cores", bench_cores(), "memory_mb",
			(json_int_t)(pages > 0 && psize > 0 ? (long long)pages * psize / (1 << 20) : 0),
			"kernel", kernel, "commit", commit && *commit ? commit : "unknown", "date", date,
			"command", argv[4], "elapsed_s", (json_int_t)atoll(argv[3]), "programs",
			programs, "results", results);

	printf("envdb benchmarks — %s, %d cores, %s\n", cpu, bench_cores(), kernel);
	printf("commit %s, %s, `%s`, %s s\n\n", commit && *commit ? commit : "unknown", date,
	       argv[4], argv[3]);
	bench_table_print(stdout, results);
	printf("\nReferences (what each floor does) and notes:\n");
	bench_table_print_references(stdout, results);
	for (i = 0; i < json_array_size(programs); i++) {
		const json_t *p = json_array_get(programs, i), *ns = json_object_get(p, "notes");
		size_t j;

		for (j = 0; j < json_array_size(ns); j++)
			printf("  - %s\n", json_string_value(json_array_get(ns, j)));
	}
	if (json_dump_file(doc, argv[2], JSON_INDENT(2) | JSON_REAL_PRECISION(6)) != 0) {
		fprintf(stderr, "bench_report: cannot write %s\n", argv[2]);
		rc = 2;
	} else {
		printf("\nwritten: %s\n", argv[2]);
	}
	json_decref(doc);
	if (rc == 0 && n_missed > 0)
		rc = 1;
	return rc;
}
