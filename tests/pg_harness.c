/*
 * tests/pg_harness.c — a throwaway PostgreSQL cluster for tests and
 * benchmarks (see pg_harness.h): initdb, a loopback-only server on a free
 * port, and a watchdog process that stops it and removes its directory
 * when the test process goes away, however it goes.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pg_harness.h"

#define H_PATH 512
#define SUPER_USER "envdb_super"

struct pg_harness {
	char bindir[H_PATH];
	char dir[H_PATH];	  /* temporary directory, socket directory */
	char data[H_PATH + 16];	  /* dir/data */
	char log[H_PATH + 16];	  /* dir/server.log */
	char cmdlog[H_PATH + 16]; /* dir/commands.log */
	char super_pw[40];
	int port;
	int version;
	int drop_privs; /* run server commands as run_uid/run_gid */
	uid_t run_uid;
	gid_t run_gid;
	pid_t watchdog;
	int wfd; /* the watchdog's pipe; closed = stop */
};

static void set_err(char *err, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || cap == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* Finding the server                                                        */
/* ------------------------------------------------------------------------ */

static int bindir_usable(const char *dir)
{
	static const char *const tools[] = {"initdb", "pg_ctl", "postgres"};
	char path[H_PATH + 16];
	size_t i;

	for (i = 0; i < sizeof(tools) / sizeof(tools[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, tools[i]);
		if (access(path, X_OK) != 0)
			return 0;
	}
	return 1;
}

/* $ENVDB_PG_BINDIR, else the newest /usr/lib/postgresql/<version>/bin. */
static int find_bindir(char *out, size_t cap)
{
	const char *env = getenv("ENVDB_PG_BINDIR");
	glob_t g;
	double best = -1;
	size_t i;

	if (env != NULL && env[0] != '\0') {
		if (!bindir_usable(env))
			return 0;
		snprintf(out, cap, "%s", env);
		return 1;
	}
	if (glob("/usr/lib/postgresql/*/bin", GLOB_NOSORT, NULL, &g) != 0)
		return 0;
	for (i = 0; i < g.gl_pathc; i++) {
		double v = strtod(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL);
		if (v > best && bindir_usable(g.gl_pathv[i])) {
			best = v;
			snprintf(out, cap, "%s", g.gl_pathv[i]);
		}
	}
	globfree(&g);
	return best >= 0;
}

/* ------------------------------------------------------------------------ */
/* Running commands                                                          */
/* ------------------------------------------------------------------------ */

/* Run argv (argv[0] a path) with a clean environment, output appended to
 * the command log, as the unprivileged user when needed.  Returns the exit
 * status, or -1. */
static int run(const pg_harness *h, char *const argv[])
{
	static char *const envp[] = {"PATH=/usr/bin:/bin", "LC_ALL=C", "LANG=C", "TZ=UTC", NULL};
	pid_t pid;
	int status, fd;

	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		fd = open(h->cmdlog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0)
			dup2(fd, 0);
		if (h->drop_privs &&
		    (setgroups(0, NULL) != 0 || setgid(h->run_gid) != 0 || setuid(h->run_uid) != 0))
			_exit(126);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void stop_and_remove(const pg_harness *h)
{
	char tool[H_PATH + 16];
	char *argv[] = {tool, "-D", (char *)h->data, "-m", "immediate", "-w",
			"-t", "30", "stop",	     NULL};
	struct stat st;
	char pid_file[H_PATH + 32];

	snprintf(pid_file, sizeof(pid_file), "%s/postmaster.pid", h->data);
	if (stat(pid_file, &st) == 0) {
		snprintf(tool, sizeof(tool), "%s/pg_ctl", h->bindir);
		(void)run(h, argv);
	}
	nftw(h->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The watchdog: wait until the test process closes the pipe (or dies),
 * then stop the server and remove everything. */
static pid_t start_watchdog(pg_harness *h)
{
	int fds[2];
	char c;
	pid_t pid;
	ssize_t n;

	if (pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		close(fds[1]);
		/* Out of the test's session: a ^C aimed at the test must not
		 * kill the watchdog before it cleaned up. */
		(void)setsid();
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		do
			n = read(fds[0], &c, 1);
		while (n > 0 || (n < 0 && errno == EINTR));
		stop_and_remove(h);
		_exit(0);
	}
	close(fds[0]);
	h->wfd = fds[1];
	return pid;
}

/* ------------------------------------------------------------------------ */
/* Start, stop                                                               */
/* ------------------------------------------------------------------------ */

static int free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd, port = -1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static int random_hex(char *out, size_t nbytes)
{
	static const char digits[] = "0123456789abcdef";
	unsigned char buf[32];
	size_t i;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || nbytes > sizeof(buf) || read(fd, buf, nbytes) != (ssize_t)nbytes) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	for (i = 0; i < nbytes; i++) {
		out[2 * i] = digits[buf[i] >> 4];
		out[2 * i + 1] = digits[buf[i] & 15];
	}
	out[2 * nbytes] = '\0';
	return 0;
}

/* The last lines of a file into err (after what is there). */
static void append_tail(char *err, size_t cap, const char *path)
{
	char buf[2048];
	size_t used, n;
	FILE *f = fopen(path, "r");

	if (f == NULL || err == NULL)
		goto done;
	if (fseek(f, -(long)(sizeof(buf) - 1), SEEK_END) != 0)
		rewind(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	used = strlen(err);
	if (used < cap)
		snprintf(err + used, cap - used, "\n--- %s ---\n%s", path, buf);
done:
	if (f != NULL)
		fclose(f);
}

static int write_conf(const pg_harness *h)
{
	char path[H_PATH + 48];
	FILE *f;

	snprintf(path, sizeof(path), "%s/postgresql.conf", h->data);
	f = fopen(path, "a");
	if (f == NULL)
		return -1;
	fprintf(f,
		"\n# pg_harness: loopback only, throwaway\n"
		"listen_addresses = '127.0.0.1'\n"
		"unix_socket_directories = '%s'\n"
		"fsync = off\n"
		"synchronous_commit = off\n"
		"full_page_writes = off\n"
		"max_connections = 60\n"
		"shared_buffers = 16MB\n"
		"password_encryption = 'scram-sha-256'\n",
		h->dir);
	return fclose(f) == 0 ? 0 : -1;
}

int pg_harness_start(pg_harness **out, char *err, size_t err_cap)
{
	char tool[H_PATH + 16], pwfile[H_PATH + 16], pwopt[H_PATH + 32], portopt[32];
	const char *tmp = getenv("TMPDIR");
	pg_harness *h;
	PGconn *c;
	int attempt, rc, fd;

	*out = NULL;
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		set_err(err, err_cap, "out of memory");
		return -1;
	}
	h->wfd = -1;
	h->watchdog = -1;
	if (!find_bindir(h->bindir, sizeof(h->bindir))) {
		set_err(err, err_cap,
			"no PostgreSQL server binaries (initdb, pg_ctl, postgres) in "
			"$ENVDB_PG_BINDIR or /usr/lib/postgresql/*/bin: install the Debian "
			"package postgresql to run this test");
		free(h);
		return PG_HARNESS_SKIP;
	}
	if (geteuid() == 0) {
		/* PostgreSQL refuses to run as root: use "nobody", in a
		 * directory it can reach (TMPDIR may be private to root). */
		struct passwd *pw = getpwnam("nobody");
		if (pw == NULL) {
			set_err(err, err_cap, "running as root and there is no user 'nobody'");
			free(h);
			return -1;
		}
		h->drop_privs = 1;
		h->run_uid = pw->pw_uid;
		h->run_gid = pw->pw_gid;
		tmp = "/tmp";
	}
	snprintf(h->dir, sizeof(h->dir), "%s/envdb-pg-XXXXXX",
		 tmp != NULL && tmp[0] ? tmp : "/tmp");
	if (mkdtemp(h->dir) == NULL) {
		set_err(err, err_cap, "mkdtemp %s: %s", h->dir, strerror(errno));
		free(h);
		return -1;
	}
	snprintf(h->data, sizeof(h->data), "%s/data", h->dir);
	snprintf(h->log, sizeof(h->log), "%s/server.log", h->dir);
	snprintf(h->cmdlog, sizeof(h->cmdlog), "%s/commands.log", h->dir);
	if (h->drop_privs &&
	    (chown(h->dir, h->run_uid, h->run_gid) != 0 || chmod(h->dir, 0700) != 0)) {
		set_err(err, err_cap, "chown %s: %s", h->dir, strerror(errno));
		nftw(h->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		free(h);
		return -1;
	}
	/* From here on the watchdog removes the directory whatever happens. */
	h->watchdog = start_watchdog(h);
	if (h->watchdog < 0) {
		set_err(err, err_cap, "cannot start the watchdog: %s", strerror(errno));
		nftw(h->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		free(h);
		return -1;
	}

	if (random_hex(h->super_pw, 16) != 0) {
		set_err(err, err_cap, "cannot read /dev/urandom");
		goto fail;
	}
	snprintf(pwfile, sizeof(pwfile), "%s/pwfile", h->dir);
	fd = open(pwfile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, h->super_pw, strlen(h->super_pw)) < 0 || close(fd) != 0 ||
	    (h->drop_privs && chown(pwfile, h->run_uid, h->run_gid) != 0)) {
		set_err(err, err_cap, "cannot write %s: %s", pwfile, strerror(errno));
		goto fail;
	}
	snprintf(tool, sizeof(tool), "%s/initdb", h->bindir);
	snprintf(pwopt, sizeof(pwopt), "--pwfile=%s", pwfile);
	{
		char *argv[] = {tool,	    "-D",   h->data,	   "-U",
				SUPER_USER, pwopt,  "-A",	   "scram-sha-256",
				"-E",	    "UTF8", "--no-locale", "--no-sync",
				NULL};
		rc = run(h, argv);
	}
	unlink(pwfile);
	if (rc != 0) {
		set_err(err, err_cap, "initdb failed (exit %d)", rc);
		append_tail(err, err_cap, h->cmdlog);
		goto fail;
	}
	if (write_conf(h) != 0) {
		set_err(err, err_cap, "cannot write postgresql.conf: %s", strerror(errno));
		goto fail;
	}
	snprintf(tool, sizeof(tool), "%s/pg_ctl", h->bindir);
	for (attempt = 0; attempt < 5; attempt++) {
		h->port = free_port();
		snprintf(portopt, sizeof(portopt), "-p %d", h->port);
		{
			char *argv[] = {tool, "-D", h->data, "-l",    h->log,  "-w",
					"-t", "60", "-o",    portopt, "start", NULL};
			rc = run(h, argv);
		}
		if (rc == 0)
			break;
		/* Another process may have taken the port in between. */
	}
	if (rc != 0) {
		set_err(err, err_cap, "the server did not start (pg_ctl exit %d)", rc);
		append_tail(err, err_cap, h->log);
		goto fail;
	}
	c = pg_harness_connect_super(h, NULL);
	if (c == NULL) {
		set_err(err, err_cap, "cannot connect to the new server");
		append_tail(err, err_cap, h->log);
		goto fail;
	}
	h->version = PQserverVersion(c);
	PQfinish(c);
	*out = h;
	return 0;
fail:
	pg_harness_stop(h);
	return -1;
}

int pg_harness_restart(pg_harness *h, char *err, size_t err_cap)
{
	char tool[H_PATH + 16], portopt[32];
	int rc;

	snprintf(tool, sizeof(tool), "%s/pg_ctl", h->bindir);
	snprintf(portopt, sizeof(portopt), "-p %d", h->port);
	{
		char *argv[] = {tool, "-D",   h->data,  "-l", h->log, "-w",	"-t",
				"60", "-m",   "fast",	"-o", portopt, "restart", NULL};
		rc = run(h, argv);
	}
	if (rc != 0) {
		set_err(err, err_cap, "pg_ctl restart failed (exit %d)", rc);
		append_tail(err, err_cap, h->log);
		return -1;
	}
	return 0;
}

void pg_harness_stop(pg_harness *h)
{
	if (h == NULL)
		return;
	if (h->wfd >= 0)
		close(h->wfd);
	if (h->watchdog > 0)
		while (waitpid(h->watchdog, NULL, 0) < 0 && errno == EINTR)
			;
	free(h);
}

int pg_harness_port(const pg_harness *h)
{
	return h->port;
}

const char *pg_harness_dir(const pg_harness *h)
{
	return h->dir;
}

const char *pg_harness_bindir(const pg_harness *h)
{
	return h->bindir;
}

int pg_harness_version(const pg_harness *h)
{
	return h->version;
}

const char *pg_harness_super_user(const pg_harness *h)
{
	(void)h;
	return SUPER_USER;
}

const char *pg_harness_super_password(const pg_harness *h)
{
	return h->super_pw;
}

/* ------------------------------------------------------------------------ */
/* Client helpers                                                            */
/* ------------------------------------------------------------------------ */

/* Append key='value' with ' and \ escaped. */
static void append_kv(char *out, size_t cap, const char *key, const char *value)
{
	size_t o = strlen(out);
	const char *p;

	if (o + strlen(key) + 4 >= cap)
		return;
	o += (size_t)snprintf(out + o, cap - o, "%s%s='", o ? " " : "", key);
	for (p = value; *p != '\0' && o + 3 < cap; p++) {
		if (*p == '\'' || *p == '\\')
			out[o++] = '\\';
		out[o++] = *p;
	}
	out[o++] = '\'';
	out[o] = '\0';
}

char *pg_harness_conninfo(char *out, size_t cap, const pg_harness *h, const char *user,
			  const char *password, const char *dbname)
{
	char port[16];

	snprintf(port, sizeof(port), "%d", h->port);
	out[0] = '\0';
	append_kv(out, cap, "host", "127.0.0.1");
	append_kv(out, cap, "port", port);
	append_kv(out, cap, "user", user);
	if (password != NULL)
		append_kv(out, cap, "password", password);
	append_kv(out, cap, "dbname", dbname);
	append_kv(out, cap, "connect_timeout", "10");
	return out;
}

static void quiet_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

PGconn *pg_harness_connect_super(const pg_harness *h, const char *dbname)
{
	char ci[1024];
	PGconn *c;

	pg_harness_conninfo(ci, sizeof(ci), h, SUPER_USER, h->super_pw,
			    dbname != NULL ? dbname : "postgres");
	c = PQconnectdb(ci);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "pg_harness: connect as superuser: %s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, quiet_notice, NULL);
	return c;
}

int pg_harness_exec(const pg_harness *h, const char *dbname, const char *sql, char *err,
		    size_t err_cap)
{
	PGconn *c = pg_harness_connect_super(h, dbname);
	PGresult *r;
	int rc = -1;

	if (c == NULL) {
		set_err(err, err_cap, "cannot connect");
		return -1;
	}
	r = PQexec(c, sql);
	if (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK)
		rc = 0;
	else
		set_err(err, err_cap, "%s", PQresultErrorMessage(r));
	PQclear(r);
	PQfinish(c);
	return rc;
}

int pg_harness_query1(const pg_harness *h, const char *dbname, const char *sql, char *out,
		      size_t cap)
{
	PGconn *c = pg_harness_connect_super(h, dbname);
	PGresult *r;
	int rows = -1;

	out[0] = '\0';
	if (c == NULL)
		return -1;
	r = PQexec(c, sql);
	if (PQresultStatus(r) == PGRES_TUPLES_OK) {
		rows = PQntuples(r);
		if (rows > 0 && PQnfields(r) > 0)
			snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
	} else {
		fprintf(stderr, "pg_harness: query failed: %s", PQresultErrorMessage(r));
	}
	PQclear(r);
	PQfinish(c);
	return rows;
}
