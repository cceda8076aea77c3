/*
 * bench/bench_scale.c — workload 6: do the per-environment costs stay flat
 * as the number of environments grows?  Measured at SMALL (1,000) and at
 * LARGE (100,000) environments, every one a real envdb environment
 * provisioned through the library (envdb_org_provision: intent, SQLite file
 * in WAL mode, minted and sealed credential, owner member, activation).
 *
 * The state lives on tmpfs (/dev/shm) when there is one: fsync is free there,
 * so 100,000 provisionings fit the time budget of `make bench` (on a disk,
 * each costs the few milliseconds of workload 1, and 100,000 of them would
 * take minutes).  Both sizes are measured on the same file system, so the
 * comparison is fair; the durable cost is workload 1's.
 *
 * At each size N, in this order:
 *  - control-plane bytes per environment: the control plane's pages
 *    (page_count x page_size, WAL included) / N;
 *  - resident memory per cached environment: the growth of this process's
 *    RSS while the cache is filled with the environments not yet cached,
 *    divided by their number (the cache holds all N afterwards);
 *  - cached resolve, hot set: 1,000 environments picked at random among
 *    the N, resolved in a random order from a cache holding all N: the cost
 *    of a hit as a function of how many environments exist and are cached
 *    (the figure whose flatness is the target);
 *  - cached resolve, uniform: every resolve a random one of the N, and its
 *    floor (bench_resolve's: a plain hash table of the same N entries with
 *    the same data); at 100,000 both are bound by memory latency, so the
 *    ratio to the floor is what tells;
 *  - provisioning: PROV_BATCH more environments, in 5 batches, with the
 *    cache full (a change through the context invalidates cache entries).
 * Then envdb_close() of the context whose cache holds all of them (it
 * stops the last_accessed_at flusher, writes what is still queued in one
 * transaction and wipes every cached secret): its time and disk syncs.
 * Targets: provisioning within 1.2 x and hot-set cached resolve within
 * 1.3 x at LARGE of their cost at SMALL; the close under 100 ms.
 *
 * Environment: ENVDB_BENCH_SCALE_N (LARGE, default 100000),
 * ENVDB_BENCH_SCALE_DIR (default /dev/shm, else TMPDIR), ENVDB_BENCH_RUNS.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bench.h"
#include "internal.h"
#include "schema.h"
#include "store.h"
#include "sync_count.h"

#define SLUG "prod"
#define USER "owner"
#define HOT 1000
#define PROV_BATCHES 5
#define REC_MAX 4096

/* ------------------------------------------------------------------------ */
/* The floor table (as in bench_resolve.c)                                   */
/* ------------------------------------------------------------------------ */

typedef struct fentry {
	struct fentry *next;
	uint64_t hash;
	size_t key_len, rec_len;
	char *blob;
} fentry;

typedef struct ftable {
	fentry **buckets;
	size_t n_buckets, n;
} ftable;

static uint64_t fnv1a(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static size_t make_key(char *key, const char *org)
{
	size_t lo = strlen(org);

	memcpy(key, org, lo + 1);
	memcpy(key + lo + 1, SLUG "\0" USER, sizeof(SLUG) + sizeof(USER));
	return lo + 1 + sizeof(SLUG) + sizeof(USER);
}

static size_t make_record(char *rec, const envdb_connection *c)
{
	const char *f[] = {c->environment_id, c->organization_id, c->slug,   c->driver,
			   c->database_name,  c->database_url,    c->role,   c->authorization,
			   c->credential_id};
	size_t n = sizeof(*c), i, l;

	memcpy(rec, c, sizeof(*c));
	for (i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		l = strlen(f[i]) + 1;
		memcpy(rec + n, f[i], l);
		n += l;
	}
	memcpy(rec + n, c->secret, c->secret_len + 1);
	return n + c->secret_len + 1;
}

static void ftable_init(ftable *t, size_t n)
{
	t->n_buckets = 16;
	while (t->n_buckets < n + n / 3)
		t->n_buckets *= 2;
	t->buckets = calloc(t->n_buckets, sizeof(*t->buckets));
	t->n = 0;
	if (t->buckets == NULL)
		abort();
}

static void ftable_put(ftable *t, const char *org, const envdb_connection *c)
{
	char key[512], rec[REC_MAX];
	fentry *e = calloc(1, sizeof(*e));

	if (e == NULL)
		abort();
	e->key_len = make_key(key, org);
	e->rec_len = make_record(rec, c);
	e->blob = malloc(e->key_len + e->rec_len);
	if (e->blob == NULL)
		abort();
	memcpy(e->blob, key, e->key_len);
	memcpy(e->blob + e->key_len, rec, e->rec_len);
	e->hash = fnv1a(key, e->key_len);
	e->next = t->buckets[e->hash & (t->n_buckets - 1)];
	t->buckets[e->hash & (t->n_buckets - 1)] = e;
	t->n++;
}

static size_t ftable_get(ftable *t, char *out, const char *org)
{
	char key[512];
	size_t key_len = make_key(key, org);
	uint64_t h = fnv1a(key, key_len);
	fentry *e;

	for (e = t->buckets[h & (t->n_buckets - 1)]; e != NULL; e = e->next)
		if (e->hash == h && e->key_len == key_len && memcmp(e->blob, key, key_len) == 0) {
			memcpy(out, e->blob + key_len, e->rec_len);
			return e->rec_len;
		}
	return 0;
}

static void ftable_free(ftable *t)
{
	size_t i;

	for (i = 0; i < t->n_buckets; i++)
		while (t->buckets[i] != NULL) {
			fentry *e = t->buckets[i];

			t->buckets[i] = e->next;
			free(e->blob);
			free(e);
		}
	free(t->buckets);
	memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------------------------ */
/* State                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct scale {
	envdb_ctx *ctx;
	char dir[1024], control[1100];
	char **orgs;      /* organization of environment i */
	size_t n, cap;    /* environments provisioned */
	size_t cached;    /* environments 0..cached-1 are in the cache */
	size_t *seq;      /* the resolve sequence of a run */
	size_t seq_len, ops;
	size_t prov_per_batch;
	ftable table;
	size_t violations, items; /* of the last check, reconcile */
	size_t reps;              /* repetitions of a check or reconcile run */
	volatile size_t sink;
} scale;

static void provision_to(scale *S, size_t n)
{
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;
	char org[32];

	o.created_by = USER;
	if (n > S->cap) {
		S->orgs = realloc(S->orgs, n * sizeof(*S->orgs));
		if (S->orgs == NULL)
			abort();
		S->cap = n;
	}
	for (; S->n < n; S->n++) {
		snprintf(org, sizeof(org), "org-%06zu", S->n);
		S->orgs[S->n] = strdup(org);
		if (envdb_org_provision(NULL, S->ctx, org, SLUG, &o) != 0)
			bench_die("provision");
	}
}

static double control_plane_bytes(scale *S)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	double bytes = 0;

	if (sqlite3_open_v2(S->control, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db,
			       "SELECT (SELECT page_count FROM pragma_page_count()) * "
			       "(SELECT page_size FROM pragma_page_size())",
			       -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		bytes = (double)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return bytes;
}

/* Resolve environments cached..n-1 once (they enter the cache); returns the
 * RSS growth per environment. */
static double fill_cache(scale *S)
{
	envdb_connection *c = NULL;
	size_t before = bench_rss_bytes(), i, n = S->n - S->cached;

	for (i = S->cached; i < S->n; i++) {
		if (envdb_resolve(&c, S->ctx, S->orgs[i], SLUG, USER) != 0)
			bench_die("resolve");
		envdb_connection_free(c);
	}
	S->cached = S->n;
	return n ? ((double)bench_rss_bytes() - (double)before) / (double)n : 0;
}

static double resolve_run(void *arg, int run)
{
	scale *S = arg;
	envdb_connection *c = NULL;
	double t0 = bench_now();
	size_t i;

	(void)run;
	for (i = 0; i < S->ops; i++) {
		if (envdb_resolve(&c, S->ctx, S->orgs[S->seq[i % S->seq_len]], SLUG, USER) != 0)
			bench_die("resolve");
		S->sink += c->secret_len;
		envdb_connection_free(c);
	}
	return (bench_now() - t0) * 1e9 / (double)S->ops;
}

static double floor_run(void *arg, int run)
{
	scale *S = arg;
	char out[REC_MAX];
	double t0 = bench_now();
	size_t i, n;

	(void)run;
	for (i = 0; i < S->ops; i++) {
		n = ftable_get(&S->table, out, S->orgs[S->seq[i % S->seq_len]]);
		if (n == 0)
			return -1;
		S->sink += (unsigned char)out[n - 2];
	}
	return (bench_now() - t0) * 1e9 / (double)S->ops;
}

static double prov_run(void *arg, int run)
{
	scale *S = arg;
	double t0 = bench_now();

	(void)run;
	provision_to(S, S->n + S->prov_per_batch);
	return (bench_now() - t0) * 1e3 / (double)S->prov_per_batch;
}

/* Bytes the control plane's log grows by per provisioning: the log emptied
 * (a TRUNCATE checkpoint from a connection of our own), k provisionings,
 * then the frames in the log (a PASSIVE checkpoint reports them) times the
 * frame size.  k is small enough for no automatic checkpoint to run
 * between (1,000 frames).  Also the commits: frames per commit. */
#define WAL_K 20
static double wal_bytes_per_env(scale *S, double *frames_per_env)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int page = 0, frames = -1;

	if (sqlite3_open_v2(S->control, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	provision_to(S, S->n + WAL_K);
	if (sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW)
		goto out;
	page = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(db, "PRAGMA wal_checkpoint(PASSIVE)", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW)
		goto out;
	frames = sqlite3_column_int(st, 1);
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (frames < 0)
		return 0;
	*frames_per_env = (double)frames / WAL_K;
	return (double)frames * (page + 24) / WAL_K;
}

/* ---- envdb check and envdb reconcile (issue 19: linear) ---------------- */

/* The floor of both: every row of every object of the control plane read
 * bare (SELECT *, every column stepped, nothing done with it) on a
 * connection of its own, in microseconds per environment. */
static double rows_floor_run_once(void *arg, int run)
{
	scale *S = arg;
	sqlite3 *db = NULL;
	char sql[256];
	double t0;
	size_t i;

	(void)run;
	if (sqlite3_open_v2(S->control, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		bench_die("open the control plane");
	t0 = bench_now();
	for (i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		sqlite3_stmt *st = NULL;
		int c;

		if (o->legacy)
			continue;
		snprintf(sql, sizeof(sql), "SELECT * FROM \"%s\"", o->name);
		if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
			bench_die(sql);
		while (sqlite3_step(st) == SQLITE_ROW)
			for (c = 0; c < sqlite3_column_count(st); c++)
				(void)sqlite3_column_text(st, c);
		sqlite3_finalize(st);
	}
	t0 = bench_now() - t0;
	sqlite3_close(db);
	return t0 * 1e6 / (double)S->n;
}

/* The floor of reconcile: the same rows, plus the listing of the sqlite
 * adapter's databases as the adapter must do it (readdir of its base_dir,
 * and for each env_*.db its deployment marker read: a symbolic link,
 * readlinkat). */
static double reconcile_floor_run_once(void *arg, int run)
{
	scale *S = arg;
	char base[1200], marker[300], line[128];
	struct dirent *de;
	double rows = rows_floor_run_once(arg, run), t0 = bench_now();
	DIR *dir;
	int bfd;

	snprintf(base, sizeof(base), "%s/envs", S->dir);
	if ((bfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (dir = fdopendir(dup(bfd))) == NULL)
		bench_die("open the databases' directory");
	while ((de = readdir(dir)) != NULL) {
		size_t len = strlen(de->d_name);
		ssize_t n;

		if (len < 4 || strcmp(de->d_name + len - 3, ".db") != 0)
			continue;
		snprintf(marker, sizeof(marker), "%.*s.envdb", (int)(len - 3), de->d_name);
		n = readlinkat(bfd, marker, line, sizeof(line));
		S->sink += n > 0 ? (size_t)n : 0;
	}
	closedir(dir);
	close(bfd);
	return rows + (bench_now() - t0) * 1e6 / (double)S->n;
}

/* The store reads of envdb check alone (every object's rows read into
 * records, each unique index's duplicate search, each reference's dangling
 * search: the calls check makes), without check's own work on them: what
 * check adds over this is its joins and rules, linear when this ratio does
 * not grow with the size. */
static void no_dup(void *c, const envdbi_object_def *o, const envdbi_index_def *ix, const char *key,
		   const char *ids)
{
	(void)c, (void)o, (void)ix, (void)key, (void)ids;
}

static void no_dangling(void *c, const envdbi_object_def *o, const envdbi_field_def *f,
			const char *row_id, const char *missing_id)
{
	(void)c, (void)o, (void)f, (void)row_id, (void)missing_id;
}

static double check_reads_run_once(void *arg, int run)
{
	scale *S = arg;
	envdbi_store *st = S->ctx->store;
	double t0 = bench_now();
	size_t i, k;

	(void)run;
	for (i = 0; i < envdbi_schema_n_objects; i++) {
		const envdbi_object_def *o = &envdbi_schema_objects[i];
		void **v = NULL;
		size_t nv = 0;

		if (o->legacy && !envdbi_store_legacy(st))
			continue;
		if (envdbi_store_rows(st, o, &v, &nv) != 0)
			bench_die("rows");
		for (k = 0; k < nv; k++)
			envdbi_record_free(o, v[k]);
		free(v);
		for (k = 0; k < o->n_indexes; k++)
			if (o->indexes[k].unique &&
			    envdbi_store_find_duplicates(st, o, &o->indexes[k], no_dup, NULL) != 0)
				bench_die("duplicates");
		if (envdbi_store_find_dangling(st, o, no_dangling, NULL) != 0)
			bench_die("dangling");
	}
	return (bench_now() - t0) * 1e6 / (double)S->n;
}

/* The reads of a reconcile dry run alone: its three environment lists and
 * two credential lists with the same filters, then for the adapter the
 * environments and databases before its listing, the listing, and both
 * again after it; no join, no report. */
static double reconcile_reads_run_once(void *arg, int run)
{
	scale *S = arg;
	envdbi_store *st = S->ctx->store;
	int64_t now = envdbi_now();
	envdb_environment **e = NULL;
	envdb_database **d = NULL;
	envdb_credential **c = NULL;
	size_t ne = 0, nd = 0, nc = 0, p;
	double t0 = bench_now();
	int pass;

	(void)run;
	for (pass = 0; pass < 3; pass++) {
		envdbi_env_filter f = ENVDBI_ENV_FILTER_INIT;

		if (pass == 0) {
			f.status = "provisioning";
			f.lease_expired_at = now;
		} else if (pass == 1) {
			f.status = "failed";
		} else {
			f.delete_due_at = now;
		}
		if (envdbi_store_env_list(st, &e, &ne, &f) != 0)
			bench_die("env list");
		envdb_environment_list_free(e, ne);
	}
	for (pass = 0; pass < 2; pass++) {
		envdbi_cred_filter f = ENVDBI_CRED_FILTER_INIT;

		f.status = pass == 0 ? "rotating" : "active";
		f.expired_at = pass == 0 ? now : now + S->ctx->manifest->expiry_horizon_seconds;
		if (envdbi_store_cred_list(st, &c, &nc, &f) != 0)
			bench_die("cred list");
		envdb_credential_list_free(c, nc);
	}
	for (p = 0; p < envdbi_plugins_count(S->ctx->plugins); p++) {
		envdbi_plugin *pl = envdbi_plugins_at(S->ctx->plugins, p);
		char **names = NULL;
		size_t n_names = 0;

		if (envdbi_plugin_kind(pl) != ENVDB_PLUGIN_ADAPTER ||
		    !(envdbi_plugin_capabilities(pl) & ENVDB_ADAPTER_CAP_LIST))
			continue;
		for (pass = 0; pass < 2; pass++) {
			if (envdbi_store_env_list(st, &e, &ne, NULL) != 0 ||
			    envdbi_store_db_list(st, &d, &nd) != 0)
				bench_die("lists");
			envdb_environment_list_free(e, ne);
			envdb_database_list_free(d, nd);
			if (pass == 0 && envdbi_adapter_list(pl, &names, &n_names) != 0)
				bench_die("adapter list");
		}
		envdbi_strv_free(names, n_names);
	}
	return (bench_now() - t0) * 1e6 / (double)S->n;
}

static double check_run_once(void *arg, int run)
{
	scale *S = arg;
	envdb_violation **v = NULL;
	size_t n = 0;
	double t0 = bench_now();

	(void)run;
	if (envdb_check(&v, &n, S->ctx) != 0)
		bench_die("check");
	t0 = bench_now() - t0;
	S->violations = n;
	envdb_violation_list_free(v, n);
	return t0 * 1e6 / (double)S->n;
}

/* A dry run (nothing to repair here: every phase reads, phase 4 joins the
 * adapter's listing with the rows). */
static double reconcile_run_once(void *arg, int run)
{
	scale *S = arg;
	envdb_reconcile_report *r = NULL;
	double t0 = bench_now();

	(void)run;
	if (envdb_reconcile(&r, S->ctx, 0) != 0)
		bench_die("reconcile");
	t0 = bench_now() - t0;
	S->items = r->n_items;
	envdb_reconcile_report_free(r);
	return t0 * 1e6 / (double)S->n;
}

/* Each of the above S->reps times (a run at 1,000 environments lasts
 * milliseconds: repeated to 20,000 rows a run, so that both sizes are
 * timed over as much work), per environment. */
#define REPEATED(name)                                                                             \
	static double name(void *arg, int run)                                                     \
	{                                                                                          \
		scale *S = arg;                                                                    \
		double t = 0;                                                                      \
		size_t r;                                                                          \
                                                                                                   \
		for (r = 0; r < S->reps; r++)                                                      \
			t += name##_once(arg, run);                                                \
		return t / (double)S->reps;                                                        \
	}
REPEATED(rows_floor_run)
REPEATED(reconcile_floor_run)
REPEATED(check_reads_run)
REPEATED(reconcile_reads_run)
REPEATED(check_run)
REPEATED(reconcile_run)

typedef struct at_size {
	bench_stats chk, chk_floor, rec, rec_floor, chk_reads, rec_reads, chk2, rec2;
	bench_stats prov, hot, hot_floor, uni, uni_floor;
	double bytes_per_env, rss_per_env, fill_s, fill_rate, wal_per_env, frames_per_env;
	size_t n;
} at_size;

static void measure(scale *S, at_size *A, size_t n, int runs)
{
	envdb_connection *c = NULL;
	double t0 = bench_now();
	size_t i;

	provision_to(S, n);
	A->n = n;
	A->fill_s = bench_now() - t0;
	printf("bench_scale: %zu environments (%.1f s to get here)\n", n, A->fill_s);
	A->bytes_per_env = control_plane_bytes(S) / (double)n;
	S->reps = n >= 20000 ? 1 : 20000 / n;
	if (bench_pair(&A->chk, &A->chk_floor, 0, runs > 3 ? 3 : runs, check_run, S, rows_floor_run,
		       S) != 0 ||
	    bench_pair(&A->rec, &A->rec_floor, 0, runs > 3 ? 3 : runs, reconcile_run, S,
		       reconcile_floor_run, S) != 0)
		exit(2);
	/* The same again against the store reads each makes (interleaved). */
	if (bench_pair(&A->chk2, &A->chk_reads, 0, runs > 3 ? 3 : runs, check_run, S,
		       check_reads_run, S) != 0 ||
	    bench_pair(&A->rec2, &A->rec_reads, 0, runs > 3 ? 3 : runs, reconcile_run, S,
		       reconcile_reads_run, S) != 0)
		exit(2);
	printf("bench_scale: check %.2f us/env (%zu violations), reconcile %.2f us/env (%zu "
	       "items)\n",
	       A->chk.median, S->violations, A->rec.median, S->items);
	A->rss_per_env = fill_cache(S);

	/* The floor table of the same n entries. */
	ftable_init(&S->table, n);
	for (i = 0; i < n; i++) {
		if (envdb_resolve(&c, S->ctx, S->orgs[i], SLUG, USER) != 0)
			bench_die("resolve");
		ftable_put(&S->table, S->orgs[i], c);
		envdb_connection_free(c);
	}

	/* Hot set: HOT environments at random among the n. */
	S->seq_len = HOT < n ? HOT : n;
	for (i = 0; i < S->seq_len; i++)
		S->seq[i] = (size_t)(bench_rand() % n);
	if (bench_pair(&A->hot, &A->hot_floor, 1, runs, resolve_run, S, floor_run, S) != 0)
		exit(2);

	/* Uniform over all n. */
	S->seq_len = S->ops;
	for (i = 0; i < S->seq_len; i++)
		S->seq[i] = (size_t)(bench_rand() % n);
	if (bench_pair(&A->uni, &A->uni_floor, 1, runs, resolve_run, S, floor_run, S) != 0)
		exit(2);
	ftable_free(&S->table);

	/* Provisioning with the cache full. */
	if (bench_repeat(&A->prov, 0, PROV_BATCHES, prov_run, S) != 0)
		exit(2);
	A->wal_per_env = wal_bytes_per_env(S, &A->frames_per_env);
	fill_cache(S);
}

int main(void)
{
	const char *base = getenv("ENVDB_BENCH_SCALE_DIR");
	size_t large = (size_t)bench_env_long("ENVDB_BENCH_SCALE_N", bench_quick() ? 10000 : 100000);
	size_t small = 1000;
	int runs = bench_runs(bench_quick() ? 3 : 5), rc;
	char man[1200], extra[256], fs[32], t[160], does[512];
	struct stat st;
	at_size A, B;
	scale S;

	memset(&S, 0, sizeof(S));
	memset(&A, 0, sizeof(A));
	memset(&B, 0, sizeof(B));
	bench_begin("bench_scale");
	setenv("ENVDB_LOG_LEVEL", "error", 0);
	if (large < 2 * small)
		large = 2 * small;
	if (base == NULL || *base == '\0')
		base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
				       access("/dev/shm", W_OK) == 0
			       ? "/dev/shm"
			       : NULL;
	if (bench_mkdtemp(S.dir, sizeof(S.dir), base, "scale") != 0) {
		perror("bench_scale: mkdtemp");
		return 2;
	}
	bench_fs_type(fs, sizeof(fs), S.dir);
	snprintf(S.control, sizeof(S.control), "%s/control.db", S.dir);
	snprintf(extra, sizeof(extra), "resolve:\n  cache_size: %zu\n  cache_ttl_ms: 36000000\n",
		 large + 4 * small);
	bench_manifest(man, sizeof(man), S.dir, "envdb.yaml", extra);
	bench_init_store(man);
	if (envdb_open(&S.ctx, man, 0) != 0)
		bench_die("open");
	S.ops = (size_t)bench_env_long("ENVDB_BENCH_SCALE_OPS", 200000);
	S.seq = calloc(S.ops > HOT ? S.ops : HOT, sizeof(*S.seq));
	S.prov_per_batch = bench_quick() ? 20 : 100;
	printf("bench_scale: %zu and %zu environments on %s (%s), %d runs\n", small, large, S.dir,
	       fs, runs);

	measure(&S, &A, small, runs);
	measure(&S, &B, large, runs);

	snprintf(t, sizeof(t), "6 provision per env, %zu envs (%s)", A.n, fs);
	bench_value("scale_provision_small", t, "ms/env", &A.prov, BENCH_NO_TARGET, 0, NULL);
	snprintf(t, sizeof(t), "6 provision per env, %zu envs (%s)", B.n, fs);
	snprintf(does, sizeof(does),
		 "the same %zu provisionings (5 batches, cache full) with %zu environments",
		 (size_t)PROV_BATCHES * S.prov_per_batch, A.n);
	bench_ratio("scale_provision", t, "ms/env", &B.prov, &A.prov, "at 1k", does, 1.2);

	snprintf(t, sizeof(t), "6 envdb check, per env, %zu envs", A.n);
	bench_ratio("scale_check_small", t, "us/env", &A.chk, &A.chk_floor, "floor",
		    "every row of every object of the control plane read bare (SELECT *, every "
		    "column stepped) on a connection of its own",
		    0);
	snprintf(t, sizeof(t), "6 envdb check, per env, %zu envs", B.n);
	bench_ratio("scale_check", t, "us/env", &B.chk, &A.chk, "at 1k",
		    "the same check (every ciphertext opened) per environment at 1,000", 0);
	snprintf(t, sizeof(t), "6 envdb reconcile (dry), per env, %zu envs", A.n);
	bench_ratio("scale_reconcile_small", t, "us/env", &A.rec, &A.rec_floor, "floor",
		    "the same rows read bare as check's floor, plus the adapter's listing done "
		    "bare: readdir of its base_dir, each env_*.db's marker read (readlinkat)",
		    0);
	snprintf(t, sizeof(t), "6 envdb reconcile (dry), per env, %zu envs", B.n);
	bench_ratio("scale_reconcile", t, "us/env", &B.rec, &A.rec, "at 1k",
		    "the same dry run per environment at 1,000 (phase 4 lists the adapter's "
		    "databases and joins them with the rows)",
		    0);
	snprintf(t, sizeof(t), "6 (check's floor, %zu vs %zu)", B.n, A.n);
	bench_ratio("scale_check_floor", t, "us/env", &B.chk_floor, &A.chk_floor, "at 1k",
		    "the floor per environment at 1,000", 0);
	snprintf(t, sizeof(t), "6 (reconcile's floor, %zu vs %zu)", B.n, A.n);
	bench_ratio("scale_reconcile_floor", t, "us/env", &B.rec_floor, &A.rec_floor, "at 1k",
		    "the floor per environment at 1,000", 0);
	{
		/* Per-row growth with the memory system's (the floor's) taken
		 * out: ~1.0 when linear. */
		double gc =
			(B.chk2.median / B.chk_reads.median) / (A.chk2.median / A.chk_reads.median);
		double gr =
			(B.rec2.median / B.rec_reads.median) / (A.rec2.median / A.rec_reads.median);
		bench_stats sc = {gc, gc, gc, 1}, sr = {gr, gr, gr, 1};

		bench_note("check's store reads: %.2f us/env at %zu, %.2f at %zu (%.2fx); "
			   "reconcile's: %.2f at %zu, %.2f at %zu (%.2fx): the growth per row of "
			   "both commands is the store's reading of the rows into records",
			   A.chk_reads.median, A.n, B.chk_reads.median, B.n,
			   B.chk_reads.median / A.chk_reads.median, A.rec_reads.median, A.n,
			   B.rec_reads.median, B.n, B.rec_reads.median / A.rec_reads.median);

		snprintf(t, sizeof(t), "6 check/its store reads, %zu vs %zu", B.n, A.n);
		bench_value(
			"scale_check_over_reads", t, "x", &sc, BENCH_AT_MOST, 1.2,
			"(check / the store reads it makes: every object's rows into records, "
			"the duplicate and dangling searches) per environment at the large size, "
			"divided by the same at 1,000, measured interleaved: 1.0 is linear");
		snprintf(t, sizeof(t), "6 reconcile/its reads, %zu vs %zu", B.n, A.n);
		bench_value(
			"scale_reconcile_over_reads", t, "x", &sr, BENCH_AT_MOST, 1.2,
			"(reconcile dry run / the reads it makes: its five filtered lists, the "
			"environments and databases before and after the adapter's listing, the "
			"listing) per environment at the large size, divided by the same at "
			"1,000, measured interleaved: 1.0 is linear");
	}

	snprintf(t, sizeof(t), "6 resolve cached, 1,000 hot of %zu cached", A.n);
	bench_ratio("scale_resolve_small", t, "ns", &A.hot, &A.hot_floor, "floor",
		    "bench_resolve's cached floor (plain FNV-1a hash table of the same entries, "
		    "same data, copy out), same keys in the same order",
		    0);
	snprintf(t, sizeof(t), "6 resolve cached, 1,000 hot of %zu cached", B.n);
	snprintf(does, sizeof(does),
		 "the same resolves of 1,000 hot environments from a cache holding all %zu", A.n);
	bench_ratio("scale_resolve", t, "ns", &B.hot, &A.hot, "at 1k", does, 1.3);
	snprintf(t, sizeof(t), "6 (its floor: 1,000 hot of %zu)", B.n);
	bench_ratio("scale_resolve_floor", t, "ns", &B.hot_floor, &A.hot_floor, "at 1k",
		    "the floor of the same resolves in a table of 1,000", 0);
	{
		/* The library's own cost per hit, the memory system's growth
		 * taken out: (library / floor) at LARGE over the same at SMALL. */
		double g = (B.hot.median / B.hot_floor.median) / (A.hot.median / A.hot_floor.median);
		bench_stats gs = {g, g, g, 1};

		snprintf(t, sizeof(t), "6 (hot resolve over its floor, %zu vs %zu)", B.n, A.n);
		bench_value("scale_resolve_over_floor", t, "x", &gs, BENCH_NO_TARGET, 0,
			    "(library / floor) at the large size divided by the same at 1,000: "
			    "how much of the growth of a hit is the library's own");
	}

	snprintf(t, sizeof(t), "6 resolve cached, uniform over %zu", A.n);
	bench_ratio("scale_resolve_uniform_small", t, "ns", &A.uni, &A.uni_floor, "floor",
		    "bench_resolve's cached floor (plain FNV-1a hash table, same entries, same "
		    "data, copy out) over the same environments in the same order",
		    0);
	snprintf(t, sizeof(t), "6 resolve cached, uniform over %zu", B.n);
	bench_ratio("scale_resolve_uniform", t, "ns", &B.uni, &B.uni_floor, "floor",
		    "the same floor at this size (memory latency bound: the floor grows too)", 0);

	{
		bench_stats v = {A.bytes_per_env, A.bytes_per_env, A.bytes_per_env, 1};
		bench_stats w = {B.bytes_per_env, B.bytes_per_env, B.bytes_per_env, 1};
		bench_stats r = {B.rss_per_env, B.rss_per_env, B.rss_per_env, 1};

		snprintf(t, sizeof(t), "6 control-plane bytes per env, %zu envs", A.n);
		bench_value("scale_bytes_small", t, "B/env", &v, BENCH_NO_TARGET, 0, NULL);
		snprintf(t, sizeof(t), "6 control-plane bytes per env, %zu envs", B.n);
		bench_value("scale_bytes", t, "B/env", &w, BENCH_NO_TARGET, 0,
			    "pages of the control plane (WAL included) / environments; each "
			    "environment has 4 rows (environment, database, credential, member) "
			    "and their index entries");
		bench_stats wa = {A.wal_per_env, A.wal_per_env, A.wal_per_env, 1};
		bench_stats wb = {B.wal_per_env, B.wal_per_env, B.wal_per_env, 1};
		char note[256];

		snprintf(t, sizeof(t), "6 log (WAL) bytes per provision, %zu envs", A.n);
		snprintf(note, sizeof(note), "%.1f pages per provisioning (2 commits)",
			 A.frames_per_env);
		bench_value("scale_wal_small", t, "B/env", &wa, BENCH_NO_TARGET, 0, note);
		snprintf(t, sizeof(t), "6 log (WAL) bytes per provision, %zu envs", B.n);
		snprintf(note, sizeof(note),
			 "%.1f pages per provisioning (2 commits): WAL frames (page + 24-byte "
			 "header) written by %d provisionings, / %d",
			 B.frames_per_env, WAL_K, WAL_K);
		bench_value("scale_wal", t, "B/env", &wb, BENCH_NO_TARGET, 0, note);
		snprintf(t, sizeof(t), "6 resident memory per cached env (%zu)", B.n - A.n);
		bench_value("scale_rss", t, "B/env", &r, BENCH_NO_TARGET, 0,
			    "growth of the process RSS while that many more environments entered "
			    "the resolve cache (entry, key, strings, secret slot, touch record, "
			    "index)");
	}
	bench_note("scale: the %zu environments were provisioned through the library on %s "
		   "(%s), where fsync is free: %.0f s; the durable per-environment cost is "
		   "workload 1's",
		   B.n, S.dir, fs, A.fill_s + B.fill_s);

	{
		sync_counts c0, c1;
		bench_stats cl;
		double t0;

		sync_count_get_thread(&c0);
		t0 = bench_now();
		envdb_close(S.ctx);
		cl.median = cl.min = cl.max = (bench_now() - t0) * 1e3;
		cl.n = 1;
		sync_count_get_thread(&c1);
		snprintf(t, sizeof(t), "6 close with %zu cached", S.cached);
		bench_value("scale_close", t, "ms", &cl, BENCH_AT_MOST, 100,
			    "envdb_close() of the context whose cache holds every environment: "
			    "stops the last_accessed_at flusher, writes what it still queues in one "
			    "transaction, wipes and frees every cached entry");
		bench_syncs((double)(c1.total - c0.total), -1);
	}
	for (size_t i = 0; i < S.n; i++)
		free(S.orgs[i]);
	free(S.orgs);
	free(S.seq);
	rc = bench_finish();
	bench_rmtree(S.dir);
	return rc;
}
