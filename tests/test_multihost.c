/*
 * tests/test_multihost.c — several envdb hosts on one PostgreSQL control
 * plane, killed with SIGKILL, the server restarted once.
 *
 * The deployment is tests/testdeploy.h on the PostgreSQL pass of
 * tests/store_matrix.h (a cluster this test starts): the sqlite adapter
 * with one base directory and the kms keyring shared by every host (as
 * shared storage and one KMS would be), the control plane a schema of the
 * cluster.  Each host has a manifest of its own naming that control plane.
 *
 * test_multihost: MH_HOSTS host processes, each in a process group of its
 * own (setsid) with its own envdb context (its own connection, resolve
 * cache and cache watch), loop for ENVDB_MULTIHOST_SECONDS (default 20)
 * over random operations on the same organizations: env provision, cred
 * rotate (overlap 0 or 1 h) and complete, resolve, member add/remove, env
 * archive/unarchive/delete (grace or --now), reconcile --apply.  A
 * supervisor sends SIGKILL to the process group of the host running about
 * a quarter of the operations, at a random moment of the operation, and
 * starts the host again; once, mid-run, it restarts the PostgreSQL server
 * (pg_ctl restart -m fast: every session ends).
 *
 * Every operation's outcome is classified: success; a refusal a race
 * explains (not found, exists, state); busy; connection lost or server
 * unavailable while the operation overlapped the restart; killed.  Anything
 * else is unexpected and fails the test.  Afterwards, with the clock moved
 * 30 days on (leases, overlaps and grace periods over): reconcile --apply
 * fails nothing, `envdb check` exits 0, a dry `envdb reconcile` finds
 * nothing (no orphan, no stuck intent), no environment is provisioning,
 * every active or archived environment has its database row, its physical
 * database and an active credential, every physical database has its row
 * (and the server's row count agrees), every active environment resolves.
 * Prints "multihost: N operations, K kills, 1 server restart, X unexpected
 * failures, ...".  ENVDB_MULTIHOST_SEED replays a run's choices.
 *
 * test_reconcile_race: stuck provisioning intents (killed after their
 * database was created), and intents a killed reconcile had claimed
 * (status failed, database still there), then two `envdb reconcile
 * --apply` of two hosts started at the same instant: each intent is rolled
 * back by exactly one of them, and nothing of it is left.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testdeploy.h"

#define MH_HOSTS 4
#define N_ORGS 3
#define N_SLUGS 8
/* a kill is scheduled for this share of the operations (of the opening of
 * a restarted host: KILL_OPEN_PERCENT), at a moment uniform over the
 * operation's mean duration: more than half land before the operation
 * ends, so about 30% of the operations are killed */
#define KILL_PERCENT 55
#define KILL_OPEN_PERCENT 15
/* an operation that overlapped the server restart may fail for it until
 * this long after the restart ended (the cache watch's back-off is 2 s) */
#define RESTART_SLACK_US (5 * 1000000)
/* no host takes this long past the deadline to stop */
#define HANG_S 60
#define OUT_MAX (256 * 1024)

enum op {
	OP_OPEN, /* envdb_open() of a (re)started host */
	OP_PROVISION,
	OP_ROTATE,
	OP_ROTATE_OVERLAP,
	OP_COMPLETE,
	OP_RESOLVE,
	OP_MEMBER_ADD,
	OP_MEMBER_REMOVE,
	OP_ARCHIVE,
	OP_UNARCHIVE,
	OP_DELETE,
	OP_DELETE_NOW,
	OP_RECONCILE,
	N_OPS
};
static const char *const op_names[N_OPS] = {
	"open",       "env provision",    "cred rotate",      "cred rotate(1h)", "cred complete",
	"resolve",    "member add",       "member remove",    "env archive",     "env unarchive",
	"env delete", "env delete --now", "reconcile --apply"};
/* how often each is picked, relative (OP_OPEN is never picked) */
static const unsigned op_weight[N_OPS] = {0, 6, 4, 3, 3, 10, 3, 2, 2, 2, 2, 2, 3};

/* Outcome of an operation, as a host reports it (besides library statuses). */
#define ST_RECONCILE_FAILED 1  /* reconcile ran, some item failed */
#define ST_RECONCILE_MISSING 2 /* ... only "missing" items: a delete --now in flight */
#define ST_BAD_RESULT 3        /* succeeded with a wrong result */

/* One record a host writes to the supervisor's pipe (one write, less
 * than PIPE_BUF: never interleaved). */
typedef struct rec {
	int32_t host, pid, op, phase; /* phase 0: begins, 1: ended */
	int32_t status, pad;
	int64_t begin_us, end_us;
	char msg[200];
} rec;

typedef struct host {
	pid_t pid; /* 0: not running */
	bool busy;
	int op;
	int64_t kill_at_us; /* 0: none */
	bool kill_sent;
	unsigned starts;
} host;

typedef struct mh_stats {
	unsigned long ops[N_OPS], ok[N_OPS], killed[N_OPS];
	unsigned long by_status[N_OPS][32]; /* refusals, index -status */
	int64_t last_restart_failure_us;    /* end of the last one lost to the restart */
	unsigned long race, busy, restart_io, recon_missing;
	unsigned long kills, unexpected, host_starts;
	double mean_us[N_OPS];
	int64_t restart0_us, restart1_us;
	char first_failure[1024];
} mh_stats;

static td T;
static mh_stats S;
static char host_manifest[MH_HOSTS][PATH_MAX + 16];
static char envdb_path[PATH_MAX];
static char out[OUT_MAX], err[OUT_MAX];

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The control_plane entry of the current PostgreSQL control plane, as
 * tests/store_matrix.c writes it, into a string. */
static char *control_plane_text(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	sm_manifest_control_plane(f);
	ck_assert_int_eq(fclose(f), 0);
	return buf;
}

/* One manifest per host: the same control plane, adapters and keyring. */
static void write_host_manifests(void)
{
	char *cp = control_plane_text();

	for (int i = 0; i < MH_HOSTS; i++) {
		snprintf(host_manifest[i], sizeof host_manifest[i], "%s/host%d.yaml", T.dir, i);
		td_manifest_variant(&T, host_manifest[i], cp);
	}
	free(cp);
}

/* ---- the command, for what is checked as an operator would ---------------- */

static void slurp(char *buf, size_t cap, const char *path)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	if (f != NULL) {
		n = fread(buf, 1, cap - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
}

/* Fork envdb --manifest M --json ARGS, stdout/stderr to o/e; when
 * `start` is not NULL the child first waits until that pipe is closed. */
static pid_t spawn(const char *manifest, const char *const *args, const char *o, const char *e,
		   const int *start)
{
	const char *argv[24];
	pid_t pid;
	int n = 0;

	argv[n++] = envdb_path;
	argv[n++] = "--manifest";
	argv[n++] = manifest;
	argv[n++] = "--json";
	for (int i = 0; args[i] != NULL && n < 23; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int fo = open(o, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int fe = open(e, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		char c;

		if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
			_exit(126);
		if (start != NULL) {
			close(start[1]);
			while (read(start[0], &c, 1) < 0 && errno == EINTR)
				;
			close(start[0]);
		}
		execv(envdb_path, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static int run_argv(const char *manifest, const char *const *args)
{
	char o[PATH_MAX + 16], e[PATH_MAX + 16];
	int st = 0;
	pid_t pid;

	snprintf(o, sizeof o, "%s/cmd.out", T.dir);
	snprintf(e, sizeof e, "%s/cmd.err", T.dir);
	pid = spawn(manifest, args, o, e, NULL);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	slurp(out, sizeof out, o);
	slurp(err, sizeof err, e);
	ck_assert_msg(WIFEXITED(st), "envdb %s: killed by signal %d", args[0],
		      WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	return WEXITSTATUS(st);
}
#define RUN(manifest, ...) run_argv((manifest), (const char *const[]){__VA_ARGS__, NULL})

static json_t *json_text(const char *text)
{
	json_error_t je;
	json_t *doc = json_loads(text, 0, &je);

	ck_assert_msg(doc != NULL, "not one JSON document (%s): %s", je.text, text);
	return doc;
}

/* ---- a host --------------------------------------------------------------- */

static void host_send(int fd, rec *r)
{
	ssize_t w;

	do
		w = write(fd, r, sizeof *r);
	while (w < 0 && errno == EINTR);
}

static enum op pick_op(unsigned *seed)
{
	unsigned total = 0, r;

	for (int i = 0; i < N_OPS; i++)
		total += op_weight[i];
	r = (unsigned)rand_r(seed) % total;
	for (int i = 0; i < N_OPS; i++) {
		if (r < op_weight[i])
			return (enum op)i;
		r -= op_weight[i];
	}
	return OP_RESOLVE;
}

/* A reconcile's outcome: 0, or ST_RECONCILE_* with the first failed item. */
static int reconcile_outcome(const envdb_reconcile_report *r, char *msg, size_t cap)
{
	bool other = false;

	if (r->n_failed == 0)
		return 0;
	for (size_t i = 0; i < r->n_items; i++) {
		const envdb_reconcile_item *it = &r->items[i];

		if (it->status == ENVDB_OK)
			continue;
		if (strcmp(it->kind, "missing") != 0 || !other)
			snprintf(msg, cap, "%s %s %s: %s (%s)", it->kind,
				 it->label ? it->label : "", it->action,
				 it->message ? it->message : "", envdb_status_str(it->status));
		if (strcmp(it->kind, "missing") != 0)
			other = true;
	}
	return other ? ST_RECONCILE_FAILED : ST_RECONCILE_MISSING;
}

/* One operation on ORG/SLUG through `ctx`; the status, a message. */
static int host_op(envdb_ctx *ctx, enum op op, const char *org, const char *slug, char *msg,
		   size_t cap)
{
	envdb_provision_opts po = ENVDB_PROVISION_OPTS_INIT;
	envdb_rotate_opts ro = ENVDB_ROTATE_OPTS_INIT;
	envdb_reconcile_report *rr = NULL;
	envdb_connection *conn = NULL;
	int rc = ENVDB_OK;

	switch (op) {
	case OP_PROVISION:
		po.env_type = "development";
		po.driver = "sqlite";
		po.created_by = "alice";
		rc = envdb_env_provision(NULL, ctx, org, slug, &po);
		break;
	case OP_ROTATE:
	case OP_ROTATE_OVERLAP:
		ro.overlap_seconds = op == OP_ROTATE ? 0 : 3600;
		rc = envdb_cred_rotate(ctx, org, slug, &ro);
		break;
	case OP_COMPLETE:
		rc = envdb_cred_complete(NULL, ctx, org, slug);
		break;
	case OP_RESOLVE:
		rc = envdb_resolve(&conn, ctx, org, slug, "alice");
		if (rc == ENVDB_OK &&
		    (strcmp(conn->organization_id, org) != 0 || strcmp(conn->slug, slug) != 0 ||
		     conn->secret_len == 0 || strcmp(conn->authorization, "full_access") != 0)) {
			snprintf(msg, cap, "resolve %s/%s gave %s/%s %s (%zu bytes)", org, slug,
				 conn->organization_id, conn->slug, conn->authorization,
				 conn->secret_len);
			envdb_connection_free(conn);
			return ST_BAD_RESULT;
		}
		envdb_connection_free(conn);
		break;
	case OP_MEMBER_ADD:
		rc = envdb_member_add(ctx, org, slug, "bob", "reader", NULL);
		break;
	case OP_MEMBER_REMOVE:
		rc = envdb_member_remove(ctx, org, slug, "bob");
		break;
	case OP_ARCHIVE:
		rc = envdb_env_archive(ctx, org, slug);
		break;
	case OP_UNARCHIVE:
		rc = envdb_env_unarchive(ctx, org, slug);
		break;
	case OP_DELETE:
	case OP_DELETE_NOW:
		rc = envdb_env_delete(ctx, org, slug, op == OP_DELETE_NOW ? ENVDB_DELETE_NOW : 0);
		break;
	case OP_RECONCILE:
		rc = envdb_reconcile(&rr, ctx, ENVDB_RECONCILE_APPLY);
		if (rc == ENVDB_OK) {
			rc = reconcile_outcome(rr, msg, cap);
			envdb_reconcile_report_free(rr);
			return rc;
		}
		break;
	default:
		break;
	}
	if (rc != ENVDB_OK)
		snprintf(msg, cap, "%s", envdb_error_last()->message);
	return rc;
}

/* The body of host `h` (a child, its own process group): until `deadline`. */
static void host_main(int h, int fd, int64_t deadline, unsigned seed)
{
	envdb_ctx *ctx = NULL;
	rec r;

	setsid();
	memset(&r, 0, sizeof r);
	r.host = h;
	r.pid = (int32_t)getpid();
	while (mono_us() < deadline) {
		enum op op = ctx == NULL ? OP_OPEN : pick_op(&seed);
		char org[16], slug[16];
		unsigned s = (unsigned)rand_r(&seed) % (N_SLUGS + 1);

		snprintf(org, sizeof org, "m%u", (unsigned)rand_r(&seed) % N_ORGS);
		/* ORG/prod, the default, rotates and resolves but is never
		 * archived or deleted: an organization keeps its default */
		if (s == N_SLUGS && op != OP_ARCHIVE && op != OP_UNARCHIVE && op != OP_DELETE &&
		    op != OP_DELETE_NOW && op != OP_PROVISION)
			snprintf(slug, sizeof slug, "prod");
		else
			snprintf(slug, sizeof slug, "s%u", s % N_SLUGS);
		r.op = op;
		r.phase = 0;
		r.status = 0;
		r.msg[0] = '\0';
		r.begin_us = mono_us();
		host_send(fd, &r);
		if (op == OP_OPEN) {
			r.status = envdb_open(&ctx, host_manifest[h], 0);
			if (r.status != ENVDB_OK) {
				snprintf(r.msg, sizeof r.msg, "%s", envdb_error_last()->message);
				ctx = NULL;
			}
		} else {
			r.status = host_op(ctx, op, org, slug, r.msg, sizeof r.msg);
		}
		r.end_us = mono_us();
		r.phase = 1;
		host_send(fd, &r);
		if (op == OP_OPEN && ctx == NULL)
			usleep(50 * 1000);
	}
	envdb_close(ctx);
	_exit(0);
}

/* ---- the supervisor ------------------------------------------------------- */

static void host_start(host *hs, int h, int pipe_w, int pipe_r, int64_t deadline, unsigned seed)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		close(pipe_r);
		host_main(h, pipe_w, deadline, seed);
	}
	hs->pid = pid;
	hs->busy = false;
	hs->kill_at_us = 0;
	hs->kill_sent = false;
	hs->starts++;
	S.host_starts++;
}

static void note_unexpected(const rec *r, const char *what)
{
	S.unexpected++;
	if (S.first_failure[0] == '\0')
		snprintf(S.first_failure, sizeof S.first_failure, "host %d %s: %s: %s", r->host,
			 op_names[r->op], what, r->msg);
}

/* True when an operation ran while the server was restarting. */
static bool overlaps_restart(const rec *r)
{
	return S.restart0_us != 0 && r->end_us >= S.restart0_us &&
	       (S.restart1_us == 0 || r->begin_us <= S.restart1_us + RESTART_SLACK_US);
}

static void classify(const rec *r)
{
	int st = r->status;

	S.ops[r->op]++;
	/* how long the operation takes, refusals included: kills land within */
	S.mean_us[r->op] = S.mean_us[r->op] > 0 ? 0.8 * S.mean_us[r->op] +
							  0.2 * (double)(r->end_us - r->begin_us)
						: (double)(r->end_us - r->begin_us);
	if (st == ENVDB_OK) {
		S.ok[r->op]++;
		return;
	}
	if (st < 0 && -st < 32)
		S.by_status[r->op][-st]++;
	if (st == ST_RECONCILE_MISSING) {
		S.recon_missing++; /* a row whose database a delete --now just dropped */
		return;
	}
	if (r->op != OP_OPEN && r->op != OP_RECONCILE &&
	    (st == ENVDB_ERR_NOT_FOUND || st == ENVDB_ERR_EXISTS || st == ENVDB_ERR_STATE)) {
		S.race++;
		return;
	}
	if (st == ENVDB_ERR_BUSY) {
		S.busy++;
		return;
	}
	if ((st == ENVDB_ERR_IO || st == ENVDB_ERR_UNAVAILABLE || st == ST_RECONCILE_FAILED) &&
	    overlaps_restart(r)) {
		S.restart_io++;
		if (r->end_us > S.last_restart_failure_us)
			S.last_restart_failure_us = r->end_us;
		return;
	}
	note_unexpected(r, st <= 0                     ? envdb_status_str(st)
			   : st == ST_RECONCILE_FAILED ? "reconcile item failed"
						       : "wrong result");
}

static void restart_server(void)
{
	S.restart0_us = mono_us();
	sm_pg_restart();
	S.restart1_us = mono_us();
	fprintf(stderr, "multihost: server restarted in %.0f ms\n",
		(double)(S.restart1_us - S.restart0_us) / 1000.0);
}

static void read_records(int fd, host *hosts, unsigned *seed)
{
	static char buf[sizeof(rec) * 64];
	static size_t have;
	ssize_t n;

	while ((n = read(fd, buf + have, sizeof buf - have)) > 0) {
		size_t off = 0;

		have += (size_t)n;
		for (; have - off >= sizeof(rec); off += sizeof(rec)) {
			rec r;
			host *hs;

			memcpy(&r, buf + off, sizeof r);
			ck_assert(r.host >= 0 && r.host < MH_HOSTS && r.op >= 0 && r.op < N_OPS);
			hs = &hosts[r.host];
			if (r.phase == 1)
				classify(&r);
			if (r.pid != hs->pid)
				continue; /* of an incarnation killed since */
			hs->busy = r.phase == 0;
			hs->op = r.op;
			hs->kill_at_us = 0;
			if (r.phase == 0 &&
			    (unsigned)rand_r(seed) % 100 <
				    (r.op == OP_OPEN ? KILL_OPEN_PERCENT : KILL_PERCENT)) {
				double span = S.mean_us[r.op] > 0 ? S.mean_us[r.op] : 20000.0;

				hs->kill_at_us =
					mono_us() + 1 +
					(int64_t)(span * (rand_r(seed) / (RAND_MAX + 1.0)));
			}
		}
		memmove(buf, buf + off, have - off);
		have -= off;
	}
}

static void supervise(int seconds, unsigned seed)
{
	host hosts[MH_HOSTS];
	int p[2];
	int64_t start = mono_us(), deadline = start + (int64_t)seconds * 1000000;
	int64_t restart_at = start + (int64_t)seconds * 400000;
	int running;

	memset(hosts, 0, sizeof hosts);
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	for (int h = 0; h < MH_HOSTS; h++)
		host_start(&hosts[h], h, p[1], p[0], deadline, seed + 7919u * (unsigned)h);
	do {
		struct pollfd pfd = {p[0], POLLIN, 0};
		int64_t now;

		poll(&pfd, 1, 1);
		read_records(p[0], hosts, &seed);
		now = mono_us();
		if (S.restart0_us == 0 && now >= restart_at)
			restart_server();
		running = 0;
		for (int h = 0; h < MH_HOSTS; h++) {
			host *hs = &hosts[h];
			int st = 0;
			pid_t w;

			if (hs->pid == 0)
				continue;
			if (now > deadline + (int64_t)HANG_S * 1000000 && !hs->kill_sent) {
				rec r = {.host = h, .op = hs->op};

				snprintf(r.msg, sizeof r.msg,
					 "still running %d s after the deadline", HANG_S);
				note_unexpected(&r, "hang");
				hs->kill_at_us = now;
			}
			/* the pid is ours until reaped: no recycled-pid kill */
			if (hs->kill_at_us != 0 && !hs->kill_sent && now >= hs->kill_at_us &&
			    (now < deadline || S.unexpected > 0)) {
				ck_assert_int_eq(kill(-hs->pid, SIGKILL), 0);
				hs->kill_sent = true;
			}
			w = waitpid(hs->pid, &st, WNOHANG);
			ck_assert_int_ge(w, 0);
			if (w != hs->pid) {
				running++;
				continue;
			}
			read_records(p[0], hosts, &seed);
			if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && hs->kill_sent) {
				S.kills++;
				if (hs->busy)
					S.killed[hs->op]++;
			} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
				rec r = {.host = h, .op = hs->op};

				snprintf(r.msg, sizeof r.msg, "wait status 0x%x", (unsigned)st);
				note_unexpected(&r, "host died");
			}
			hs->pid = 0;
			if (now < deadline && S.unexpected == 0) {
				host_start(hs, h, p[1], p[0], deadline,
					   seed + hs->starts * 104729u);
				running++;
			}
		}
	} while (running > 0);
	read_records(p[0], hosts, &seed);
	close(p[0]);
	close(p[1]);
}

static void print_stats(int seconds, unsigned seed)
{
	unsigned long total = 0, killed = 0;

	for (int j = 0; j < N_OPS; j++) {
		char line[512];
		int len = snprintf(line, sizeof line,
				   "multihost: %-18s %6lu ended %6lu ok %5lu killed", op_names[j],
				   S.ops[j], S.ok[j], S.killed[j]);

		for (int x = 1; x < 32; x++)
			if (S.by_status[j][x] != 0 && len > 0 && (size_t)len < sizeof line)
				len += snprintf(line + len, sizeof line - (size_t)len, ", %lu %s",
						S.by_status[j][x], envdb_status_str(-x));
		fprintf(stderr, "%s\n", line);
		total += S.ops[j] + S.killed[j];
		killed += S.killed[j];
	}
	fprintf(stderr,
		"multihost: %lu operations, %lu kills, 1 server restart, %lu unexpected failures "
		"(%d hosts, %d s, seed %u; %lu killed in flight, %lu host starts, %lu refused by "
		"a race, %lu busy, %lu lost to the server restart, %lu reconciles met a delete "
		"in flight)\n",
		total, S.kills, S.unexpected, MH_HOSTS, seconds, seed, killed, S.host_starts,
		S.race, S.busy, S.restart_io, S.recon_missing);
	fprintf(stderr,
		"multihost: %.0f%% of the operations killed; the server was down %.0f ms, the last "
		"operation lost to it ended %.0f ms after it was back\n",
		total ? 100.0 * (double)killed / (double)total : 0.0,
		(double)(S.restart1_us - S.restart0_us) / 1000.0,
		S.last_restart_failure_us
			? (double)(S.last_restart_failure_us - S.restart1_us) / 1000.0
			: 0.0);
}

/* ---- afterwards ----------------------------------------------------------- */

static bool file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Nothing half-registered: every environment is active or archived (none
 * provisioning, none failed), with its database row, its physical database
 * and an active full_access credential; every physical database has its
 * row.  Every active one resolves.  Returns the number of environments. */
static size_t assert_one_to_one(envdb_ctx *ctx, size_t *n_active)
{
	envdb_environment **v = NULL;
	size_t n = 0, n_db = 0;
	char rows[32];

	*n_active = 0;
	ck_assert_int_eq(envdb_env_list(&v, &n, ctx, NULL), ENVDB_OK);
	for (size_t i = 0; i < n; i++) {
		const envdb_environment *e = v[i];
		envdb_database *db = NULL;
		envdb_credential **c = NULL;
		size_t nc = 0, active = 0;
		char path[PATH_MAX + 64];

		ck_assert_msg(
			strcmp(e->status, "active") == 0 || strcmp(e->status, "archived") == 0,
			"%s/%s is %s after reconcile", e->organization_id, e->slug, e->status);
		ck_assert_msg(envdb_env_database(&db, ctx, e->organization_id, e->slug) == ENVDB_OK,
			      "%s/%s (%s) has no database row: %s", e->organization_id, e->slug,
			      e->status, envdb_error_last()->message);
		snprintf(path, sizeof path, "%s/%s.db", T.sqlite_dir, db->database_name);
		ck_assert_msg(file_exists(path), "%s/%s: no physical database %s",
			      e->organization_id, e->slug, path);
		envdb_database_free(db);
		n_db++;
		ck_assert_int_eq(envdb_cred_list(&c, &nc, ctx, e->organization_id, e->slug),
				 ENVDB_OK);
		for (size_t k = 0; k < nc; k++)
			if (strcmp(c[k]->status, "active") == 0 &&
			    strcmp(c[k]->authorization, "full_access") == 0)
				active++;
		envdb_credential_list_free(c, nc);
		ck_assert_msg(active == 1, "%s/%s: %zu active full_access credentials",
			      e->organization_id, e->slug, active);
		if (strcmp(e->status, "active") == 0) {
			envdb_connection *conn = NULL;

			(*n_active)++;
			ck_assert_msg(envdb_resolve(&conn, ctx, e->organization_id, e->slug,
						    "alice") == ENVDB_OK,
				      "resolve %s/%s: %s", e->organization_id, e->slug,
				      envdb_error_last()->message);
			envdb_connection_free(conn);
		}
	}
	envdb_environment_list_free(v, n);
	ck_assert_msg(td_sqlite_dbs(&T) == n_db, "%zu physical databases for %zu database rows",
		      td_sqlite_dbs(&T), n_db);
	/* and the server agrees (the rows as the schema holds them) */
	ck_assert_int_eq(
		sm_pg_query1("SELECT count(*) FROM sys_environment_database", rows, sizeof rows),
		1);
	ck_assert_uint_eq(strtoul(rows, NULL, 10), n_db);
	ck_assert_int_eq(sm_pg_query1("SELECT count(*) FROM sys_environment WHERE status NOT IN "
				      "('active', 'archived') OR pending_database_name IS NOT NULL",
				      rows, sizeof rows),
			 1);
	ck_assert_str_eq(rows, "0");
	return n;
}

/* The dry reconcile of the command finds nothing to do. */
static void assert_reconcile_clean(const char *manifest)
{
	json_t *doc;

	ck_assert_msg(RUN(manifest, "reconcile") == 0, "reconcile: %s %s", err, out);
	doc = json_text(out);
	ck_assert_msg(json_array_size(json_object_get(doc, "items")) == 0,
		      "reconcile still finds work: %s", out);
	json_decref(doc);
}

static void aftermath(void)
{
	envdb_ctx *ctx;
	size_t n, n_active = 0, failed;

	/* as of 30 days on: leases, overlaps and grace periods have ended */
	ctx = td_open(&T);
	failed = td_reconcile_apply(ctx, 30 * 86400);
	ck_assert_uint_eq(failed, 0);
	td_clock_ahead(30 * 86400);
	ck_assert_msg(RUN(host_manifest[1], "check") == 0, "envdb check: %s %s", out, err);
	assert_reconcile_clean(host_manifest[2]);
	td_clock_ahead(0);
	ck_assert_uint_eq(td_check(ctx), 0);
	n = assert_one_to_one(ctx, &n_active);
	fprintf(stderr,
		"multihost: afterwards check clean, no orphan, no stuck intent, %zu environments "
		"(%zu active) each with its row, database and credential\n",
		n, n_active);
	envdb_close(ctx);
}

static void setup_orgs(void)
{
	envdb_provision_opts o = ENVDB_PROVISION_OPTS_INIT;
	envdb_ctx *ctx = td_open(&T);
	char org[16];

	o.created_by = "alice";
	o.driver = "sqlite";
	for (int i = 0; i < N_ORGS; i++) {
		snprintf(org, sizeof org, "m%d", i);
		ck_assert_msg(envdb_org_provision(NULL, ctx, org, NULL, &o) == ENVDB_OK,
			      "org provision %s: %s", org, envdb_error_last()->message);
	}
	envdb_close(ctx);
}

START_TEST(test_multihost)
{
	const char *sec = getenv("ENVDB_MULTIHOST_SECONDS"), *sd = getenv("ENVDB_MULTIHOST_SEED");
	int seconds = sec && *sec ? atoi(sec) : getenv("ENVDB_VALGRIND") ? 5 : 20;
	unsigned seed = sd && *sd ? (unsigned)strtoul(sd, NULL, 10)
				  : (unsigned)time(NULL) ^ (unsigned)getpid();

	if (!sm_pg())
		return;
	if (seconds < 2)
		seconds = 2;
	memset(&S, 0, sizeof S);
	setup_orgs();
	supervise(seconds, seed);
	print_stats(seconds, seed);
	ck_assert_msg(S.unexpected == 0, "%lu unexpected failures (seed %u); the first: %s",
		      S.unexpected, seed, S.first_failure);
	ck_assert_msg(S.kills > 0 && S.restart1_us != 0, "a run without kills or restart");
	aftermath();
}
END_TEST

/* ---- two reconcilers, one intent ------------------------------------------ */

typedef struct stuck_arg {
	const char *slug;
	const char *failpoint;
	int64_t ahead;
} stuck_arg;

/* A child that provisions race/SLUG or reconciles, killed at a failpoint. */
static int stuck_child(void *p)
{
	const stuck_arg *a = p;
	envdb_reconcile_report *r = NULL;
	envdb_ctx *ctx = NULL;

	if (envdb_open(&ctx, T.manifest, 0) != ENVDB_OK)
		return 3;
	td_clock_ahead(a->ahead);
	td_failpoints(a->failpoint);
	if (a->slug != NULL)
		td_provision(ctx, "race", a->slug, "sqlite", "alice");
	else
		envdb_reconcile(&r, ctx, ENVDB_RECONCILE_APPLY);
	/* the failpoint did not kill */
	fprintf(stderr, "stuck child: %s\n", envdb_error_last()->message);
	return 4;
}

#define RACE_INTENTS 6
#define RACE_ROUNDS 4

START_TEST(test_reconcile_race)
{
	unsigned long acted_total = 0;

	if (!sm_pg())
		return;
	setup_orgs();
	for (int round = 0; round < RACE_ROUNDS; round++) {
		char slugs[RACE_INTENTS][16], o[2][PATH_MAX + 16], e[2][PATH_MAX + 16];
		envdb_environment **v = NULL;
		size_t n = 0, n_stuck = 0;
		char ids[RACE_INTENTS][40];
		int acted[RACE_INTENTS] = {0}, start[2], st;
		pid_t pid[2];
		envdb_ctx *ctx;

		for (int i = 0; i < RACE_INTENTS; i++) {
			stuck_arg a = {slugs[i], "provision.after_create=kill", 0};

			snprintf(slugs[i], sizeof slugs[i], "r%d-%d", round, i);
			st = td_fork(stuck_child, &a);
			ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
				      "provision %s: wait status 0x%x", slugs[i], (unsigned)st);
		}
		/* odd rounds: a reconcile killed after it claimed one intent
		 * (failed, its database still there) */
		if (round % 2 == 1) {
			stuck_arg a = {NULL, "reconcile.after_claim=kill", 86400};

			st = td_fork(stuck_child, &a);
			ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
				      "reconcile: wait status 0x%x", (unsigned)st);
		}
		ctx = td_open(&T);
		ck_assert_int_eq(envdb_env_list(&v, &n, ctx, "race"), ENVDB_OK);
		for (size_t i = 0; i < n; i++) {
			if (strcmp(v[i]->status, "provisioning") != 0 &&
			    strcmp(v[i]->status, "failed") != 0)
				continue;
			ck_assert_uint_lt(n_stuck, RACE_INTENTS);
			ck_assert_ptr_nonnull(v[i]->pending_database_name);
			snprintf(ids[n_stuck++], sizeof ids[0], "%s", v[i]->id);
		}
		envdb_environment_list_free(v, n);
		ck_assert_uint_eq(n_stuck, RACE_INTENTS);
		ck_assert_uint_eq(td_sqlite_dbs(&T), N_ORGS + RACE_INTENTS);

		/* two hosts, one instant, two days on (every lease expired,
		 * also that of the claim of the killed reconcile) */
		td_clock_ahead(2 * 86400);
		ck_assert_int_eq(pipe(start), 0);
		for (int k = 0; k < 2; k++) {
			snprintf(o[k], sizeof o[k], "%s/race%d.out", T.dir, k);
			snprintf(e[k], sizeof e[k], "%s/race%d.err", T.dir, k);
			pid[k] = spawn(host_manifest[k],
				       (const char *const[]){"reconcile", "--apply", NULL}, o[k],
				       e[k], start);
		}
		close(start[0]);
		close(start[1]);
		for (int k = 0; k < 2; k++) {
			json_t *doc, *it;
			size_t j;

			ck_assert_int_eq(waitpid(pid[k], &st, 0), pid[k]);
			ck_assert_msg(WIFEXITED(st), "reconcile %d: wait status 0x%x", k,
				      (unsigned)st);
			slurp(out, sizeof out, o[k]);
			slurp(err, sizeof err, e[k]);
			doc = json_text(out);
			json_array_foreach(json_object_get(doc, "items"), j, it)
			{
				const char *kind = json_string_value(json_object_get(it, "kind"));
				const char *action =
					json_string_value(json_object_get(it, "action"));
				const char *id =
					json_string_value(json_object_get(it, "object_id"));
				int x = -1;

				ck_assert_msg(kind && action && strcmp(kind, "intent") == 0,
					      "reconcile %d: unexpected item in %s", k, out);
				for (int i = 0; i < RACE_INTENTS; i++)
					if (id != NULL && strcmp(id, ids[i]) == 0)
						x = i;
				ck_assert_msg(x >= 0,
					      "reconcile %d: an intent not of this round: %s", k,
					      out);
				if (strcmp(action, "rolled back") == 0)
					acted[x]++;
				else
					ck_abort_msg("reconcile %d: %s", k, out);
			}
			json_decref(doc);
		}
		td_clock_ahead(0);
		for (int i = 0; i < RACE_INTENTS; i++) {
			ck_assert_msg(acted[i] == 1,
				      "round %d: intent %s rolled back by %d reconciles", round,
				      ids[i], acted[i]);
			acted_total++;
		}
		/* nothing of them is left */
		ck_assert_uint_eq(td_env_count(ctx, "race", NULL), 0);
		ck_assert_uint_eq(td_sqlite_dbs(&T), N_ORGS);
		ck_assert_uint_eq(td_check(ctx), 0);
		envdb_close(ctx);
		td_clock_ahead(86400);
		assert_reconcile_clean(host_manifest[3]);
		td_clock_ahead(0);
	}
	fprintf(stderr,
		"multihost: reconcile race: %lu intents in %d rounds, each rolled back by exactly "
		"one of two concurrent reconciles, none reported failed by the other\n",
		acted_total, RACE_ROUNDS);
}
END_TEST

static void setup(void)
{
	td_opts o = TD_OPTS_INIT;

	o.driver = "sqlite";
	o.lease_seconds = 5; /* reconcile in the run rolls back killed intents */
	o.grace_seconds = 2; /* ... and finishes deletions, freeing their slugs */
	td_setup(&T, &o);
	snprintf(envdb_path, sizeof envdb_path, "%s/core/envdb", getenv("ENVDB_TEST_BUILDDIR"));
	if (sm_pg())
		write_host_manifests();
}

static void teardown(void)
{
	td_teardown(&T);
}

static Suite *multihost_suite(void)
{
	Suite *s = suite_create("multihost");
	TCase *race = tcase_create("race"), *hosts = tcase_create("hosts");

	/* CK_RUN_CASE=race or hosts runs one */
	tcase_add_checked_fixture(race, setup, teardown);
	tcase_set_timeout(race, 300);
	tcase_add_test(race, test_reconcile_race);
	suite_add_tcase(s, race);
	tcase_add_checked_fixture(hosts, setup, teardown);
	tcase_set_timeout(hosts, 300);
	tcase_add_test(hosts, test_multihost);
	suite_add_tcase(s, hosts);
	return s;
}

int main(void)
{
	/* a test of the PostgreSQL store only (the SQLite file has no hosts) */
	setenv("ENVDB_TEST_STORE", "postgresql", 1);
	return sm_run(multihost_suite) ? EXIT_FAILURE : EXIT_SUCCESS;
}
