/*
 * tests/test_storm.c — a random SIGKILL storm over the real envdb command,
 * key rotation in the mix.
 *
 * STORM_SLOTS envdb processes (the built core/envdb, --json) run at once
 * on one deployment (tests/testdeploy.h: the sqlite and faulty adapters,
 * the kms keyring), each a random operation: org/env provision, cred
 * rotate (with and without overlap) and complete, key generate (with and
 * without --current), key rotate, key rewrap, member add/remove, resolve
 * (owner and reader), reconcile --apply, env archive/unarchive/delete
 * (after the grace period, or --now).  A killer sends SIGKILL to about a
 * third of them at a random moment of their run (uniform over 1.3 times
 * the mean duration of that operation so far) and half of the killed
 * commands are started again, as an operator retrying would.  The storm
 * lasts ENVDB_STORM_SECONDS (default 20; 5 under valgrind);
 * ENVDB_STORM_SEED replays a run's choices.
 *
 * During the storm a command may only succeed or refuse what a race
 * explains (65 with not found / exists / state; 69 "not supported" and 77
 * for a reader: the sqlite driver mints no read-only credential, bob may
 * have been removed).  Anything else fails the test: above all 78 from a
 * keyring a killed `key generate` left broken, an integrity error from a
 * killed rewrap, 74, 75 (the busy timeout is 5 s), 70, a crash, a command
 * still running after HANG_S seconds.
 *
 * Afterwards: every key file is whole (32 bytes, 0600) and `current`
 * names one; `reconcile --apply` (the clock moved 30 days on, so leases,
 * grace periods and overlaps have ended) then `check` exit 0; a dry
 * reconcile finds nothing (no orphan, no interrupted work); every physical
 * database has its row and every row its database; every active
 * environment resolves; key rotate, rewrap, provision and check still
 * work; and once the temporary files of killed writers are stale, loading
 * the keyring removes them.  Prints operations, kills and exit statuses.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
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

#define STORM_SLOTS 4
#define STORM_ARGS 16
#define N_SLUGS 5
#define N_ORGS 2
#define N_EXIT 256
#define N_CODE 32
#define KILL_PERCENT 35
#define OUT_MAX (256 * 1024)
/* plugins/kms/keyring.c removes a temporary file nobody holds once it is
 * this many seconds old (KMS_TMP_STALE_S, plus a margin) */
#define TMP_STALE_S 7
/* no command takes this long (seconds), whatever the load */
#define HANG_S 60
#define STR_(x) #x
#define STR(x) STR_(x)

enum op {
	OP_ORG_PROVISION,
	OP_ENV_PROVISION,
	OP_ENV_PROVISION_FAULTY,
	OP_CRED_ROTATE,
	OP_CRED_ROTATE_OVERLAP,
	OP_CRED_COMPLETE,
	OP_KEY_GENERATE,
	OP_KEY_GENERATE_CURRENT,
	OP_KEY_ROTATE,
	OP_KEY_REWRAP,
	OP_MEMBER_ADD,
	OP_MEMBER_REMOVE,
	OP_RESOLVE_OWNER,
	OP_RESOLVE_READER,
	OP_RECONCILE,
	OP_ARCHIVE,
	OP_UNARCHIVE,
	OP_DELETE,
	OP_DELETE_NOW,
	N_OPS
};
static const char *const op_names[N_OPS] = {
	"org provision",   "env provision",  "env provision(faulty)", "cred rotate",
	"cred rotate(1h)", "cred complete",  "key generate",          "key generate --current",
	"key rotate",      "key rewrap",     "member add",            "member remove",
	"resolve(owner)",  "resolve(reader)", "reconcile --apply",    "env archive",
	"env unarchive",   "env delete",     "env delete --now"};
/* how often each is picked, relative */
static const unsigned op_weight[N_OPS] = {2, 6, 4, 5, 5, 4, 3, 3, 4, 3,
					  4, 2, 8, 4, 3, 2, 2, 2, 3};

typedef struct slot {
	pid_t pid;             /* 0: idle */
	enum op op;
	char argbuf[STORM_ARGS][96];
	int argc;
	int64_t started_us;
	int64_t kill_at_us;    /* 0: not to be killed */
	bool kill_sent;
	char out[PATH_MAX + 16];
	char err[PATH_MAX + 16];
} slot;

typedef struct storm_stats {
	unsigned long started[N_OPS], exited[N_OPS], killed[N_OPS], retried;
	unsigned long by_exit[N_OPS][N_EXIT];
	unsigned long by_code[N_CODE]; /* refusals by library status, index -status */
	unsigned long failed, kills_sent, kills_missed;
	double mean_us[N_OPS];
	char first_failure[2048];
} storm_stats;

static td T;
static storm_stats S;
static char envdb_path[PATH_MAX];
static char out[OUT_MAX], err[OUT_MAX];

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

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

/* fork + exec envdb --manifest M --json ARGS with stdout/stderr to files. */
static pid_t spawn(const char *const *args, int argc, const char *o, const char *e)
{
	const char *argv[STORM_ARGS + 5];
	pid_t pid;
	int i, n = 0;

	argv[n++] = envdb_path;
	argv[n++] = "--manifest";
	argv[n++] = T.manifest;
	argv[n++] = "--json";
	for (i = 0; i < argc && i < STORM_ARGS; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int fo = open(o, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int fe = open(e, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
			_exit(126);
		execv(envdb_path, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

/* Run envdb to completion; stdout/stderr in out/err; the exit status. */
static int run_argv(const char *const *args)
{
	char o[PATH_MAX + 16], e[PATH_MAX + 16];
	int argc = 0, st = 0;
	pid_t pid;

	while (args[argc] != NULL)
		argc++;
	snprintf(o, sizeof(o), "%s/final.out", T.dir);
	snprintf(e, sizeof(e), "%s/final.err", T.dir);
	pid = spawn(args, argc, o, e);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	slurp(out, sizeof(out), o);
	slurp(err, sizeof(err), e);
	ck_assert_msg(WIFEXITED(st), "envdb %s: killed by signal %d", args[0],
		      WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	return WEXITSTATUS(st);
}
#define RUN(...) run_argv((const char *const[]){__VA_ARGS__, NULL})

static json_t *json_out(void)
{
	json_error_t je;
	json_t *doc = json_loads(out, 0, &je);

	ck_assert_msg(doc != NULL, "stdout is not one JSON document (%s): %s", je.text, out);
	return doc;
}

/* ---- the storm ------------------------------------------------------------ */

static void slot_args(slot *s, unsigned *seed)
{
	char ref[64], org[16];
	unsigned r = (unsigned)rand_r(seed) % (N_SLUGS + 1);
	int k = 0;

	/* storm/prod (the organization's default) resolves and rotates, but
	 * is never archived or deleted: an organization keeps its default */
	if (r == N_SLUGS && s->op != OP_ARCHIVE && s->op != OP_UNARCHIVE && s->op != OP_DELETE &&
	    s->op != OP_DELETE_NOW)
		snprintf(ref, sizeof(ref), "storm/prod");
	else
		snprintf(ref, sizeof(ref), "storm/s%u", r % N_SLUGS);
	snprintf(org, sizeof(org), "o%u", rand_r(seed) % N_ORGS);
#define A(str) snprintf(s->argbuf[k++], sizeof(s->argbuf[0]), "%s", (str))
	switch (s->op) {
	case OP_ORG_PROVISION:
		A("org"), A("provision"), A(org), A("--by"), A("alice");
		if (rand_r(seed) % 2)
			A("--driver"), A("faulty");
		break;
	case OP_ENV_PROVISION:
	case OP_ENV_PROVISION_FAULTY:
		A("env"), A("provision"), A("storm"), A(ref + 6), A("--type"), A("development");
		A("--by"), A("alice");
		A("--driver"), A(s->op == OP_ENV_PROVISION ? "sqlite" : "faulty");
		break;
	case OP_CRED_ROTATE:
		A("cred"), A("rotate"), A(ref), A("--overlap"), A("0s");
		break;
	case OP_CRED_ROTATE_OVERLAP:
		A("cred"), A("rotate"), A(ref), A("--overlap"), A("1h");
		break;
	case OP_CRED_COMPLETE:
		A("cred"), A("complete"), A(ref);
		break;
	case OP_KEY_GENERATE:
		A("key"), A("generate");
		break;
	case OP_KEY_GENERATE_CURRENT:
		A("key"), A("generate"), A("--current");
		break;
	case OP_KEY_ROTATE:
		A("key"), A("rotate");
		break;
	case OP_KEY_REWRAP:
		A("key"), A("rewrap");
		break;
	case OP_MEMBER_ADD:
		A("member"), A("add"), A(ref), A("bob"), A("reader"), A("--by"), A("alice");
		break;
	case OP_MEMBER_REMOVE:
		A("member"), A("remove"), A(ref), A("bob");
		break;
	case OP_RESOLVE_OWNER:
		A("resolve"), A(ref), A("--user"), A("alice"), A("--reveal");
		break;
	case OP_RESOLVE_READER:
		A("resolve"), A(ref), A("--user"), A("bob");
		break;
	case OP_RECONCILE:
		A("reconcile"), A("--apply");
		break;
	case OP_ARCHIVE:
		A("env"), A("archive"), A(ref), A("--yes");
		break;
	case OP_UNARCHIVE:
		A("env"), A("unarchive"), A(ref);
		break;
	case OP_DELETE:
		A("env"), A("delete"), A(ref);
		break;
	case OP_DELETE_NOW:
		A("env"), A("delete"), A(ref), A("--now"), A("--yes");
		break;
	default:
		break;
	}
#undef A
	s->argc = k;
}

static enum op pick_op(unsigned *seed)
{
	unsigned total = 0, r;
	int i;

	for (i = 0; i < N_OPS; i++)
		total += op_weight[i];
	r = rand_r(seed) % total;
	for (i = 0; i < N_OPS; i++) {
		if (r < op_weight[i])
			return (enum op)i;
		r -= op_weight[i];
	}
	return OP_RESOLVE_OWNER;
}

static void slot_start(slot *s, unsigned *seed, bool again)
{
	const char *args[STORM_ARGS];
	int i;

	if (!again) {
		s->op = pick_op(seed);
		slot_args(s, seed);
	} else {
		S.retried++;
	}
	for (i = 0; i < s->argc; i++)
		args[i] = s->argbuf[i];
	s->kill_sent = false;
	s->kill_at_us = 0;
	s->started_us = mono_us();
	if ((unsigned)rand_r(seed) % 100 < KILL_PERCENT) {
		double span = 1.3 * (S.mean_us[s->op] > 0 ? S.mean_us[s->op] : 30000.0);

		s->kill_at_us = s->started_us + 1 + (int64_t)(span * (rand_r(seed) / (RAND_MAX + 1.0)));
	}
	S.started[s->op]++;
	s->pid = spawn(args, s->argc, s->out, s->err);
}

/* The library status of a --json error document, or 1 when there is none. */
static int error_doc_code(const char *text)
{
	json_t *doc = json_loads(text, 0, NULL), *e;
	int code = 1;

	if (doc != NULL && (e = json_object_get(doc, "error")) != NULL &&
	    json_is_integer(json_object_get(e, "envdb_status")))
		code = (int)json_integer_value(json_object_get(e, "envdb_status"));
	json_decref(doc);
	return code;
}

/* What a race explains: a refusal of the state another process left. */
static bool expected(enum op op, int exit_status, int code)
{
	switch (exit_status) {
	case 0:
		return true;
	case 65:
		return code == ENVDB_ERR_NOT_FOUND || code == ENVDB_ERR_EXISTS ||
		       code == ENVDB_ERR_STATE;
	case 69: /* the sqlite adapter mints no read-only credential */
		return op == OP_RESOLVE_READER && code == ENVDB_ERR_NOT_SUPPORTED;
	case 77: /* bob removed meanwhile, or never added */
		return op == OP_RESOLVE_READER && code == ENVDB_ERR_PERMISSION;
	default:
		return false;
	}
}

static void note_failure(const slot *s, int st, const char *what)
{
	char o[4096], e[4096], cmd[1024] = "";
	size_t len = 0;
	int i;

	S.failed++;
	if (S.first_failure[0] != '\0')
		return;
	for (i = 0; i < s->argc; i++)
		len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, " %s", s->argbuf[i]);
	slurp(o, sizeof(o), s->out);
	slurp(e, sizeof(e), s->err);
	snprintf(S.first_failure, sizeof(S.first_failure),
		 "envdb%s: %s (wait status 0x%x)\nstderr: %.700s\nstdout: %.700s", cmd, what, st, e,
		 o);
}

/* Account for the end of slot `s`'s command; true when it was killed and
 * is to be started again. */
static bool slot_reaped(slot *s, int st, unsigned *seed)
{
	int64_t took = mono_us() - s->started_us;
	bool again = false;

	s->pid = 0;
	if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && s->kill_sent) {
		S.killed[s->op]++;
		again = rand_r(seed) % 2 == 0;
	} else if (WIFSIGNALED(st)) {
		note_failure(s, st, "died of a signal the storm did not send");
	} else if (WIFEXITED(st)) {
		char o[OUT_MAX / 4];
		int x = WEXITSTATUS(st), code = 0;

		if (s->kill_sent)
			S.kills_missed++; /* it exited before the signal landed */
		S.exited[s->op]++;
		S.by_exit[s->op][x]++;
		S.mean_us[s->op] = S.mean_us[s->op] > 0 ? 0.8 * S.mean_us[s->op] + 0.2 * (double)took
							  : (double)took;
		if (x != 0) {
			slurp(o, sizeof(o), s->out);
			code = error_doc_code(o);
			if (code < 0 && -code < N_CODE)
				S.by_code[-code]++;
		}
		if (!expected(s->op, x, code)) {
			char what[96];

			snprintf(what, sizeof(what), "exit %d (%s)", x,
				 code <= 0 ? envdb_status_str(code) : "no JSON error document");
			note_failure(s, st, what);
		}
	}
	return again;
}

static void storm(int seconds, unsigned seed)
{
	slot slots[STORM_SLOTS];
	bool again[STORM_SLOTS];
	int64_t deadline = mono_us() + (int64_t)seconds * 1000000;
	int i, running;

	memset(slots, 0, sizeof(slots));
	for (i = 0; i < STORM_SLOTS; i++) {
		snprintf(slots[i].out, sizeof(slots[i].out), "%s/slot%d.out", T.dir, i);
		snprintf(slots[i].err, sizeof(slots[i].err), "%s/slot%d.err", T.dir, i);
		again[i] = false;
	}
	do {
		int64_t now = mono_us();

		running = 0;
		for (i = 0; i < STORM_SLOTS; i++) {
			slot *s = &slots[i];
			int st = 0;
			pid_t w;

			if (s->pid == 0 && now < deadline && S.failed == 0)
				slot_start(s, &seed, again[i]);
			if (s->pid == 0)
				continue;
			/* a command that hangs (a lock never released, a busy loop)
			 * fails the storm instead of its timeout */
			if (!s->kill_sent && now - s->started_us > (int64_t)HANG_S * 1000000) {
				note_failure(s, 0, "still running after " STR(HANG_S) " s: killed");
				s->kill_at_us = now;
			}
			/* the pid is ours until reaped: no recycled-pid kill */
			if (s->kill_at_us != 0 && !s->kill_sent && now >= s->kill_at_us) {
				ck_assert_int_eq(kill(s->pid, SIGKILL), 0);
				s->kill_sent = true;
				S.kills_sent++;
			}
			w = waitpid(s->pid, &st, WNOHANG);
			ck_assert_int_ge(w, 0);
			if (w == s->pid)
				again[i] = slot_reaped(s, st, &seed);
			else
				running++;
		}
		if (running > 0)
			usleep(500);
	} while (running > 0 || (mono_us() < deadline && S.failed == 0));
}

static void print_stats(int seconds, unsigned seed)
{
	unsigned long total = 0, killed = 0, by_exit[N_EXIT] = {0};
	char line[1024];
	int j, x, len;

	for (j = 0; j < N_OPS; j++) {
		len = snprintf(line, sizeof(line), "storm: %-22s %5lu started %5lu killed", op_names[j],
			       S.started[j], S.killed[j]);
		for (x = 0; x < N_EXIT; x++)
			if (S.by_exit[j][x] != 0 && len > 0 && (size_t)len < sizeof(line))
				len += snprintf(line + len, sizeof(line) - (size_t)len, "  exit %d: %lu",
						x, S.by_exit[j][x]);
		fprintf(stderr, "%s\n", line);
		total += S.started[j];
		killed += S.killed[j];
		for (x = 0; x < N_EXIT; x++)
			by_exit[x] += S.by_exit[j][x];
	}
	len = snprintf(line, sizeof(line), "storm: exit statuses:");
	for (x = 0; x < N_EXIT; x++)
		if (by_exit[x] != 0 && len > 0 && (size_t)len < sizeof(line))
			len += snprintf(line + len, sizeof(line) - (size_t)len, " %d: %lu", x,
					by_exit[x]);
	fprintf(stderr, "%s\n", line);
	len = snprintf(line, sizeof(line), "storm: refusals by status:");
	for (x = 1; x < N_CODE; x++)
		if (S.by_code[x] != 0 && len > 0 && (size_t)len < sizeof(line))
			len += snprintf(line + len, sizeof(line) - (size_t)len, " %s: %lu",
					envdb_status_str(-x), S.by_code[x]);
	fprintf(stderr, "%s\n", line);
	fprintf(stderr,
		"storm: %lu operations in %d s by %d concurrent envdb processes (seed %u): %lu "
		"killed by SIGKILL (%lu signals sent, %lu landed after the exit), %lu restarted, "
		"%lu unexpected failures\n",
		total, seconds, STORM_SLOTS, seed, killed, S.kills_sent, S.kills_missed, S.retried,
		S.failed);
}

/* ---- afterwards ----------------------------------------------------------- */

/* Every key file whole and owner-only, `current` naming one; the number
 * of key files, and of temporary files in *n_tmp. */
static size_t check_keyring(size_t *n_tmp)
{
	char dir[PATH_MAX + 16], path[PATH_MAX + 300], cur[128] = "";
	size_t n_keys = 0;
	struct dirent *de;
	struct stat st;
	DIR *d;

	*n_tmp = 0;
	snprintf(dir, sizeof(dir), "%s/keyring", T.dir);
	d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);

		if (de->d_name[0] == '.' && l > 4 && strcmp(de->d_name + l - 4, ".tmp") == 0) {
			(*n_tmp)++;
			continue;
		}
		if (l <= 4 || strcmp(de->d_name + l - 4, ".key") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		ck_assert_int_eq(lstat(path, &st), 0);
		ck_assert_msg(S_ISREG(st.st_mode) && st.st_size == 32,
			      "key file %s: %lld bytes (a killed writer left it incomplete)", path,
			      (long long)st.st_size);
		ck_assert_msg((st.st_mode & 0777) == 0600, "key file %s: mode %04o", path,
			      (unsigned)(st.st_mode & 07777));
		n_keys++;
	}
	closedir(d);
	snprintf(path, sizeof(path), "%s/current", dir);
	slurp(cur, sizeof(cur), path);
	ck_assert_msg(strlen(cur) > 1 && cur[strlen(cur) - 1] == '\n', "keyring current: \"%s\"",
		      cur);
	cur[strlen(cur) - 1] = '\0';
	snprintf(path, sizeof(path), "%s/%s.key", dir, cur);
	ck_assert_msg(stat(path, &st) == 0 && st.st_size == 32, "current key %s has no whole file",
		      cur);
	return n_keys;
}

typedef struct env_ref {
	char ref[64];
	bool active;
} env_ref;

/* The environments of `org` (NULL: all) by `envdb env list`: up to `cap`
 * into `refs` (with org); the number, and of those provisioning in
 * *n_provisioning. */
static size_t list_envs(const char *org, env_ref *refs, size_t cap, size_t *n_provisioning)
{
	json_t *doc, *arr, *e;
	size_t i, n;

	ck_assert_msg(org ? RUN("env", "list", org) == 0 : RUN("env", "list") == 0, "env list: %s",
		      err);
	doc = json_out();
	arr = json_object_get(doc, "environments");
	ck_assert(json_is_array(arr));
	n = json_array_size(arr);
	*n_provisioning = 0;
	json_array_foreach(arr, i, e)
	{
		const char *st = json_string_value(json_object_get(e, "status"));
		const char *slug = json_string_value(json_object_get(e, "slug"));

		ck_assert_ptr_nonnull(st);
		ck_assert_ptr_nonnull(slug);
		if (strcmp(st, "provisioning") == 0)
			(*n_provisioning)++;
		if (refs != NULL && org != NULL && i < cap) {
			snprintf(refs[i].ref, sizeof(refs[i].ref), "%s/%s", org, slug);
			refs[i].active = strcmp(st, "active") == 0;
		}
	}
	json_decref(doc);
	return n;
}

static void assert_aftermath(int64_t storm_end_us)
{
	static const char *const orgs[] = {"storm", "o0", "o1"};
	env_ref refs[64];
	char ahead[32];
	size_t n_tmp, n_keys, n_all, n_active = 0, n_rows = 0, i, j, n;
	json_t *doc;
	int64_t wait_us;

	n_keys = check_keyring(&n_tmp);
	fprintf(stderr, "storm: keyring holds %zu whole keys, %zu temporary files\n", n_keys,
		n_tmp);

	/* every command works (no 78 from the keyring, whatever was killed) */
	ck_assert_msg(RUN("key", "list") == 0, "key list: %s", err);
	ck_assert_msg(RUN("plugins") == 0, "plugins: %s", err);

	/* finish or roll back what the kills interrupted, as of 30 days on */
	snprintf(ahead, sizeof(ahead), "%lld", (long long)(time(NULL) + 30 * 86400));
	setenv("ENVDB_TEST_NOW", ahead, 1);
	ck_assert_msg(RUN("reconcile", "--apply") == 0, "reconcile --apply: %s %s", err, out);
	doc = json_out();
	fprintf(stderr, "storm: reconcile --apply: %zu items\n",
		json_array_size(json_object_get(doc, "items")));
	ck_assert_int_eq(json_integer_value(json_object_get(doc, "failed")), 0);
	json_decref(doc);
	ck_assert_msg(RUN("check") == 0, "check after reconcile --apply: %s", out);
	/* ... and nothing is left to do: no orphan, no interrupted work */
	ck_assert_msg(RUN("reconcile") == 0, "reconcile: %s", err);
	doc = json_out();
	ck_assert_msg(json_array_size(json_object_get(doc, "items")) == 0,
		      "reconcile still finds work after --apply: %s", out);
	json_decref(doc);
	unsetenv("ENVDB_TEST_NOW");

	/* every row has its database and every database its row; every
	 * active environment resolves */
	n_all = list_envs(NULL, NULL, 0, &n);
	ck_assert_uint_eq(n, 0);
	for (i = 0; i < sizeof(orgs) / sizeof(orgs[0]); i++) {
		n = list_envs(orgs[i], refs, 64, &j);
		ck_assert_uint_le(n, 64);
		n_rows += n;
		for (j = 0; j < n; j++) {
			if (refs[j].active)
				n_active++;
			if (refs[j].active)
				ck_assert_msg(RUN("resolve", refs[j].ref, "--user", "alice",
						  "--reveal") == 0,
					      "resolve %s: %s", refs[j].ref, err);
		}
	}
	ck_assert_uint_eq(n_rows, n_all);
	ck_assert_msg(td_sqlite_dbs(&T) + td_faulty_dbs(&T) == n_all,
		      "%zu sqlite + %zu faulty databases for %zu environments", td_sqlite_dbs(&T),
		      td_faulty_dbs(&T), n_all);
	fprintf(stderr, "storm: %zu environments left (%zu active), each with its database\n",
		n_all, n_active);

	/* and what changes keys and credentials still works */
	ck_assert_msg(RUN("key", "rotate") == 0, "key rotate: %s", err);
	ck_assert_msg(RUN("key", "rewrap") == 0, "key rewrap: %s", err);
	ck_assert_msg(RUN("env", "provision", "storm", "after", "--type", "development", "--by",
			  "alice") == 0,
		      "env provision: %s", err);
	ck_assert_msg(RUN("cred", "rotate", "storm/after", "--overlap", "0s") == 0,
		      "cred rotate: %s", err);
	ck_assert_msg(RUN("resolve", "storm/after", "--user", "alice", "--reveal") == 0,
		      "resolve: %s", err);
	ck_assert_msg(RUN("check") == 0, "check: %s", out);

	/* the temporary files of killed writers, once stale, are removed by
	 * the next load of the keyring */
	wait_us = storm_end_us + (int64_t)TMP_STALE_S * 1000000 - mono_us();
	if (n_tmp > 0 && wait_us > 0)
		usleep((useconds_t)wait_us);
	ck_assert_msg(RUN("key", "list") == 0, "key list: %s", err);
	check_keyring(&n_tmp);
	ck_assert_msg(n_tmp == 0, "%zu temporary files left in the keyring", n_tmp);
}

START_TEST(test_storm)
{
	const char *sec = getenv("ENVDB_STORM_SECONDS"), *sd = getenv("ENVDB_STORM_SEED");
	const char *build = getenv("ENVDB_TEST_BUILDDIR");
	int seconds = sec && *sec ? atoi(sec) : getenv("ENVDB_VALGRIND") ? 5 : 20;
	unsigned seed = sd && *sd ? (unsigned)strtoul(sd, NULL, 10)
				  : (unsigned)time(NULL) ^ (unsigned)getpid();
	unsigned long keyops;
	int64_t end;

	if (seconds < 1)
		seconds = 1;
	memset(&S, 0, sizeof(S));
	snprintf(envdb_path, sizeof(envdb_path), "%s/core/envdb", build);
	ck_assert_msg(RUN("org", "provision", "storm", "--by", "alice") == 0, "org provision: %s",
		      err);
	storm(seconds, seed);
	end = mono_us();
	print_stats(seconds, seed);
	ck_assert_msg(S.failed == 0, "%lu unexpected failures (seed %u); the first: %s", S.failed,
		      seed, S.first_failure);
	keyops = S.exited[OP_KEY_ROTATE] + S.exited[OP_KEY_GENERATE_CURRENT] +
		 S.killed[OP_KEY_ROTATE] + S.killed[OP_KEY_GENERATE_CURRENT];
	ck_assert_msg(keyops > 0 && S.kills_sent > 0, "a storm without key rotation or kills");
	assert_aftermath(end);
}
END_TEST

static void setup(void)
{
	td_opts o = TD_OPTS_INIT;

	o.driver = "sqlite";
	o.lease_seconds = 10; /* reconcile --apply in the storm rolls back killed intents */
	td_setup(&T, &o);
}

static void teardown(void)
{
	td_teardown(&T);
}

static Suite *storm_suite(void)
{
	Suite *s = suite_create("storm");
	TCase *tc = tcase_create("storm");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_storm);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return sm_run(storm_suite) ? EXIT_FAILURE : EXIT_SUCCESS;
}
