/*
 * tests/sync_count.h — count the fsync and fdatasync calls of this process
 * (tests/sync_count.c interposes both in the executable; the library, the
 * plugins and SQLite reach them through the same symbols).  Used by tests
 * that pin how many syncs an operation makes, and by bench/ to print them.
 */
#ifndef ENVDB_TESTS_SYNC_COUNT_H
#define ENVDB_TESTS_SYNC_COUNT_H

#include <stdint.h>

typedef struct {
	uint64_t total; /* fsync + fdatasync */
	uint64_t dirs;	/* of them, on a directory */
	uint64_t files; /* of them, on a regular file */
	uint64_t ns_dirs, ns_files; /* time spent in them (CLOCK_MONOTONIC) */
} sync_counts;

/* The counts since the process started (thread-safe, relaxed). */
void sync_count_get(sync_counts *out);

/* The same, of the calling thread only (not of a library's own threads). */
void sync_count_get_thread(sync_counts *out);

#endif
