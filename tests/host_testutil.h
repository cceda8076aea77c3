/*
 * tests/host_testutil.h — small helpers of the plugin-host tests: a
 * scratch directory per test, writing files, the build tree's fixture
 * directory.  Header-only (static functions), included by one test
 * program each.
 */
#ifndef ENVDB_HOST_TESTUTIL_H
#define ENVDB_HOST_TESTUTIL_H

#include <check.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tu_dir[PATH_MAX]; /* the current test's scratch directory */

static inline void tu_setup(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(tu_dir, sizeof(tu_dir), "%s/envdb-host-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tu_dir));
}

static inline int tu_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static inline void tu_teardown(void)
{
	if (tu_dir[0] != '\0')
		nftw(tu_dir, tu_rm, 16, FTW_DEPTH | FTW_PHYS);
	tu_dir[0] = '\0';
}

/* tu_dir/NAME into `out` (static buffer per call site is the caller's). */
static inline void tu_path(char *out, size_t cap, const char *name)
{
	ck_assert_int_lt(snprintf(out, cap, "%s/%s", tu_dir, name), (int)cap);
}

/* Write `text` to tu_dir/NAME with `mode`; the path goes to out. */
static inline void tu_write(char *out, size_t cap, const char *name, int mode, const char *text)
{
	FILE *f;

	tu_path(out, cap, name);
	f = fopen(out, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(out, (mode_t)mode), 0);
}

static inline const char *tu_builddir(void)
{
	const char *b = getenv("ENVDB_TEST_BUILDDIR");
	return b && b[0] ? b : ".";
}

/* Where the loader fixtures are built. */
static inline const char *tu_fixture_dir(void)
{
	static char dir[PATH_MAX];

	if (dir[0] == '\0')
		snprintf(dir, sizeof(dir), "%s/tests/fixtures/.libs", tu_builddir());
	return dir;
}

#define tu_assert_contains(hay, needle) \
	ck_assert_msg(strstr((hay), (needle)) != NULL, "expected \"%s\" in \"%s\"", (needle), (hay))

#endif /* ENVDB_HOST_TESTUTIL_H */
