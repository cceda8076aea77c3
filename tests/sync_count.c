/*
 * tests/sync_count.c — fsync and fdatasync interposed in the executable
 * that links this file: each call is counted (by the kind of file it
 * syncs) and passed on to the C library's function (dlsym RTLD_NEXT).
 * No LD_PRELOAD: symbols of the executable come first for every shared
 * object loaded later, the plugins and libsqlite3 included.
 */
#include "config.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sync_count.h"

typedef int (*sync_fn)(int);

/* The build hides symbols by default; these must be seen by every shared
 * object (with the link flags -Wl,--export-dynamic-symbol=fsync,...). */
#define SYNC_COUNT_EXPORT __attribute__((visibility("default")))

static _Atomic uint64_t n_total, n_dirs, n_files, t_dirs, t_files;
static _Thread_local sync_counts mine;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Count the call f(fd) and time it. */
static int counted(sync_fn f, int fd)
{
	struct stat st;
	uint64_t t0, dt;
	int rc, kind;

	kind = fstat(fd, &st) != 0 ? 0 : S_ISDIR(st.st_mode) ? 1 : S_ISREG(st.st_mode) ? 2 : 0;
	t0 = now_ns();
	rc = f(fd);
	dt = now_ns() - t0;
	atomic_fetch_add_explicit(&n_total, 1, memory_order_relaxed);
	mine.total++;
	if (kind == 1) {
		atomic_fetch_add_explicit(&n_dirs, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&t_dirs, dt, memory_order_relaxed);
		mine.dirs++;
		mine.ns_dirs += dt;
	} else if (kind == 2) {
		atomic_fetch_add_explicit(&n_files, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&t_files, dt, memory_order_relaxed);
		mine.files++;
		mine.ns_files += dt;
	}
	return rc;
}

static sync_fn real(const char *name)
{
	/* A data pointer to a function pointer, as dlsym(3) documents it. */
	union {
		void *p;
		sync_fn f;
	} u;

	u.p = dlsym(RTLD_NEXT, name);
	return u.f;
}

SYNC_COUNT_EXPORT int fsync(int fd)
{
	static _Atomic(sync_fn) fn;
	sync_fn f = atomic_load(&fn);

	if (f == NULL) {
		f = real("fsync");
		atomic_store(&fn, f);
	}
	return counted(f, fd);
}

SYNC_COUNT_EXPORT int fdatasync(int fd)
{
	static _Atomic(sync_fn) fn;
	sync_fn f = atomic_load(&fn);

	if (f == NULL) {
		f = real("fdatasync");
		atomic_store(&fn, f);
	}
	return counted(f, fd);
}

void sync_count_get(sync_counts *out)
{
	out->total = atomic_load_explicit(&n_total, memory_order_relaxed);
	out->dirs = atomic_load_explicit(&n_dirs, memory_order_relaxed);
	out->files = atomic_load_explicit(&n_files, memory_order_relaxed);
	out->ns_dirs = atomic_load_explicit(&t_dirs, memory_order_relaxed);
	out->ns_files = atomic_load_explicit(&t_files, memory_order_relaxed);
}

void sync_count_get_thread(sync_counts *out)
{
	*out = mine;
}
