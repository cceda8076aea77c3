/*
 * tests/test_soak.c — concurrency soak on one control plane.
 *
 * SOAK_PROCS processes, each with SOAK_THREADS threads sharing one context
 * (the library is thread-safe) and one more thread with a context of its
 * own, run a random mix of provision, rotate (with and without overlap),
 * complete, resolve (owner and reader), member add/remove and delete-now on
 * a small pool of environments (so they collide) of the faulty adapter and
 * the sqlite adapter, for ENVDB_SOAK_SECONDS (default 20; 5 under
 * valgrind).  Expected refusals of a race (not found, exists, state, not a
 * member) are counted as such; anything else fails the soak — in
 * particular ENVDB_ERR_BUSY or a timeout, which must not happen while the
 * busy timeout (manifest control_plane_busy_timeout_ms, 5 s) is not
 * exceeded.  Afterwards every invariant holds: `envdb check` is clean,
 * nothing is provisioning, every physical database has its row and every
 * row its database, every active environment resolves for its owner, and
 * a reconcile with every deadline past finds nothing but ended rotations.
 * Prints the number of operations done.
 */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testdeploy.h"

#define SOAK_PROCS 3
#define SOAK_THREADS 3 /* sharing one context, plus one with its own */
#define N_SLUGS 6
#define N_STATUS 20

enum op {
	OP_PROVISION,
	OP_PROVISION_SQLITE,
	OP_ROTATE,
	OP_ROTATE_OVERLAP,
	OP_COMPLETE,
	OP_RESOLVE_OWNER,
	OP_RESOLVE_READER,
	OP_MEMBER_ADD,
	OP_MEMBER_REMOVE,
	OP_DELETE,
	N_OPS
};
static const char *const op_names[N_OPS] = {
	"provision", "provision(sqlite)", "rotate", "rotate(overlap)", "complete",
	"resolve(owner)", "resolve(reader)", "member add", "member remove", "delete"};

/* Shared between every process (MAP_SHARED): counts per operation and per
 * status (index -status), and the first unexpected error. */
typedef struct soak_stats {
	atomic_ulong done[N_OPS];
	atomic_ulong by_status[N_OPS][N_STATUS];
	atomic_int failed;
	char first_failure[512];
	atomic_flag failure_lock;
} soak_stats;

static td T;
static soak_stats *S;
static int64_t soak_deadline_ms;

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A refusal a race may legitimately produce. */
static bool expected(enum op op, int rc)
{
	switch (rc) {
	case ENVDB_OK:
	case ENVDB_ERR_NOT_FOUND: /* deleted meanwhile */
	case ENVDB_ERR_STATE:     /* archived/provisioning meanwhile */
		return true;
	case ENVDB_ERR_EXISTS: /* provisioned (or member added) meanwhile */
		return op == OP_PROVISION || op == OP_PROVISION_SQLITE || op == OP_MEMBER_ADD;
	case ENVDB_ERR_PERMISSION: /* the reader was removed meanwhile */
		return op == OP_RESOLVE_READER;
	default:
		return false;
	}
}

static int run_op(envdb_ctx *ctx, enum op op, const char *slug)
{
	envdb_provision_opts po = ENVDB_PROVISION_OPTS_INIT;
	envdb_rotate_opts ro = ENVDB_ROTATE_OPTS_INIT;
	envdb_connection *c = NULL;
	int rc;

	po.env_type = "development";
	po.created_by = "alice";
	switch (op) {
	case OP_PROVISION:
		return envdb_env_provision(NULL, ctx, "soak", slug, &po);
	case OP_PROVISION_SQLITE:
		po.driver = "sqlite";
		return envdb_env_provision(NULL, ctx, "soak", slug, &po);
	case OP_ROTATE:
		ro.overlap_seconds = 0;
		return envdb_cred_rotate(ctx, "soak", slug, &ro);
	case OP_ROTATE_OVERLAP:
		ro.overlap_seconds = 3600;
		return envdb_cred_rotate(ctx, "soak", slug, &ro);
	case OP_COMPLETE:
		return envdb_cred_complete(NULL, ctx, "soak", slug);
	case OP_RESOLVE_OWNER:
	case OP_RESOLVE_READER:
		rc = envdb_resolve(&c, ctx, "soak", slug, op == OP_RESOLVE_OWNER ? "alice" : "bob");
		if (rc == ENVDB_OK && (c->secret == NULL || c->secret_len == 0))
			rc = ENVDB_ERR_INTEGRITY;
		/* the reader gets the read-only credential (sqlite: ?mode=ro) */
		if (rc == ENVDB_OK && op == OP_RESOLVE_READER &&
		    strcmp(c->authorization, "read_only") != 0)
			rc = ENVDB_ERR_INTEGRITY;
		envdb_connection_free(c);
		return rc;
	case OP_MEMBER_ADD:
		return envdb_member_add(ctx, "soak", slug, "bob", "reader", NULL);
	case OP_MEMBER_REMOVE:
		return envdb_member_remove(ctx, "soak", slug, "bob");
	case OP_DELETE:
		return envdb_env_delete(ctx, "soak", slug, ENVDB_DELETE_NOW);
	default:
		return ENVDB_ERR_MISUSE;
	}
}

static void note_failure(enum op op, const char *slug, int rc, const char *msg)
{
	atomic_fetch_add(&S->failed, 1);
	while (atomic_flag_test_and_set(&S->failure_lock))
		;
	if (S->first_failure[0] == '\0')
		snprintf(S->first_failure, sizeof(S->first_failure), "%s soak/%s: %s (%d): %s",
			 op_names[op], slug, envdb_status_str(rc), rc, msg);
	atomic_flag_clear(&S->failure_lock);
}

typedef struct worker_arg {
	envdb_ctx *ctx; /* shared, or NULL: open one */
	unsigned seed;
} worker_arg;

static void *worker(void *p)
{
	worker_arg *a = p;
	envdb_ctx *own = NULL, *ctx = a->ctx;
	unsigned seed = a->seed;

	if (ctx == NULL) {
		if (envdb_open(&own, T.manifest, 0) != ENVDB_OK) {
			note_failure(OP_PROVISION, "-", envdb_error_last()->status,
				     envdb_error_last()->message);
			return NULL;
		}
		ctx = own;
	}
	while (mono_ms() < soak_deadline_ms && atomic_load(&S->failed) == 0) {
		char slug[16];
		enum op op = (enum op)(rand_r(&seed) % N_OPS);
		int rc, st;

		snprintf(slug, sizeof(slug), "s%u", rand_r(&seed) % N_SLUGS);
		rc = run_op(ctx, op, slug);
		st = rc <= 0 && -rc < N_STATUS ? -rc : N_STATUS - 1;
		atomic_fetch_add(&S->done[op], 1);
		atomic_fetch_add(&S->by_status[op][st], 1);
		if (!expected(op, rc)) {
			char msg[1024];
			envdb_environment *e = NULL;
			envdb_member **m = NULL;
			size_t nm = 0, q;

			snprintf(msg, sizeof(msg), "%s", envdb_error_last()->message);
			/* what the control plane holds now, for the report */
			if (envdb_env_get(&e, ctx, "soak", slug) == ENVDB_OK) {
				size_t l = strlen(msg);

				snprintf(msg + l, sizeof(msg) - l, " [now: %s %s, members:", e->id,
					 e->status);
				if (envdb_member_list(&m, &nm, ctx, "soak", slug) == ENVDB_OK) {
					for (q = 0; q < nm; q++) {
						l = strlen(msg);
						snprintf(msg + l, sizeof(msg) - l, " %s", m[q]->user_id);
					}
					envdb_member_list_free(m, nm);
				}
				l = strlen(msg);
				snprintf(msg + l, sizeof(msg) - l, "]");
				envdb_environment_free(e);
			}
			note_failure(op, slug, rc, msg);
		}
	}
	envdb_close(own);
	return NULL;
}

static int soak_process(void *arg)
{
	pthread_t th[SOAK_THREADS + 1];
	worker_arg wa[SOAK_THREADS + 1];
	envdb_ctx *shared = NULL;
	unsigned base = (unsigned)(uintptr_t)arg;
	int i;

	if (envdb_open(&shared, T.manifest, 0) != ENVDB_OK) {
		note_failure(OP_PROVISION, "-", envdb_error_last()->status,
			     envdb_error_last()->message);
		return 1;
	}
	for (i = 0; i <= SOAK_THREADS; i++) {
		wa[i].ctx = i < SOAK_THREADS ? shared : NULL;
		wa[i].seed = base * 131u + (unsigned)i * 7919u + 1u;
		if (pthread_create(&th[i], NULL, worker, &wa[i]) != 0)
			return 2;
	}
	for (i = 0; i <= SOAK_THREADS; i++)
		pthread_join(th[i], NULL);
	envdb_close(shared);
	return 0;
}

static void assert_invariants(void)
{
	envdb_environment **v = NULL;
	envdb_reconcile_report *r = NULL;
	size_t n = 0, i, with_db = 0;
	envdb_ctx *ctx = td_open(&T);

	ck_assert_uint_eq(td_check(ctx), 0);
	ck_assert_int_eq(envdb_env_list(&v, &n, ctx, NULL), ENVDB_OK);
	for (i = 0; i < n; i++) {
		envdb_database *db = NULL;
		envdb_connection *c = NULL;

		ck_assert_msg(strcmp(v[i]->status, "active") == 0, "soak/%s is %s", v[i]->slug,
			      v[i]->status);
		ck_assert_int_eq(envdb_env_database(&db, ctx, "soak", v[i]->slug), ENVDB_OK);
		with_db++;
		envdb_database_free(db);
		ck_assert_msg(envdb_resolve(&c, ctx, "soak", v[i]->slug, "alice") == ENVDB_OK,
			      "resolve soak/%s: %s", v[i]->slug, envdb_error_last()->message);
		envdb_connection_free(c);
	}
	envdb_environment_list_free(v, n);
	ck_assert_uint_eq(td_faulty_dbs(&T) + td_sqlite_dbs(&T), with_db);
	td_clock_ahead(30 * 86400);
	ck_assert_int_eq(envdb_reconcile(&r, ctx, 0), ENVDB_OK);
	td_clock_ahead(0);
	for (i = 0; i < r->n_items; i++)
		ck_assert_msg(strcmp(r->items[i].kind, "rotation") == 0, "reconcile finds %s %s %s",
			      r->items[i].kind, r->items[i].action,
			      r->items[i].label ? r->items[i].label : "");
	fprintf(stderr, "soak: %zu environments left, %zu ended rotations to revoke\n", n,
		r->n_items);
	envdb_reconcile_report_free(r);
	ck_assert_uint_eq(td_reconcile_apply(ctx, 30 * 86400), 0);
	ck_assert_uint_eq(td_check(ctx), 0);
	envdb_close(ctx);
}

START_TEST(test_soak)
{
	const char *sec = getenv("ENVDB_SOAK_SECONDS");
	int seconds = sec && *sec ? atoi(sec) : getenv("ENVDB_VALGRIND") ? 5 : 20;
	pid_t pids[SOAK_PROCS];
	unsigned long total = 0;
	int i, j, k;

	S = mmap(NULL, sizeof(*S), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(S != MAP_FAILED);
	memset(S, 0, sizeof(*S));
	atomic_flag_clear(&S->failure_lock);
	if (seconds < 1)
		seconds = 1;
	soak_deadline_ms = mono_ms() + (int64_t)seconds * 1000;
	fflush(NULL);
	for (i = 0; i < SOAK_PROCS; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0)
			_exit(soak_process((void *)(uintptr_t)(i + 1)));
	}
	for (i = 0; i < SOAK_PROCS; i++) {
		int st = 0;

		ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "soak process %d: status 0x%x",
			      i, st);
	}
	for (j = 0; j < N_OPS; j++) {
		char line[512];
		int len = snprintf(line, sizeof(line), "soak: %-18s %6lu", op_names[j],
				   atomic_load(&S->done[j]));

		for (k = 0; k < N_STATUS; k++) {
			unsigned long c = atomic_load(&S->by_status[j][k]);

			if (c != 0 && len > 0 && (size_t)len < sizeof(line))
				len += snprintf(line + len, sizeof(line) - (size_t)len, "  %s %lu",
						envdb_status_str(-k), c);
		}
		fprintf(stderr, "%s\n", line);
		total += atomic_load(&S->done[j]);
	}
	fprintf(stderr,
		"soak: %lu operations in %d s by %d processes x %d threads on one control plane; "
		"%d unexpected failures\n",
		total, seconds, SOAK_PROCS, SOAK_THREADS + 1, atomic_load(&S->failed));
	ck_assert_msg(atomic_load(&S->failed) == 0, "%s", S->first_failure);
	ck_assert_uint_gt(total, 0);
	ck_assert_uint_eq(atomic_load(&S->by_status[OP_PROVISION][-ENVDB_ERR_BUSY]), 0);
	assert_invariants();
	munmap(S, sizeof(*S));
}
END_TEST

static void setup(void)
{
	td_setup(&T, NULL);
}

static void teardown(void)
{
	td_teardown(&T);
}

static Suite *soak_suite(void)
{
	Suite *s = suite_create("soak");
	TCase *tc = tcase_create("soak");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_soak);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return sm_run(soak_suite) ? EXIT_FAILURE : EXIT_SUCCESS;
}
