/*
 * tests/turso_emulator.c — the Turso Platform API emulator and libSQL
 * gateway used by tests/test_plugin_turso.c; see turso_emulator.h for what
 * it emulates and how tests script it.
 *
 * Shapes follow the documented contract:
 *   POST   /v1/organizations/{org}/databases            {"name","group"} ->
 *          200 {"database":{"DbId","Hostname","Name"}}
 *          duplicate: 409 {"error":"database with name X already exists"} |
 *                     400 {"error":"database with same name already exists"} |
 *                     422 {"error":"database name 'X' is not available"}
 *          400 {"error":"group not found"}
 *   GET    /v1/organizations/{org}/databases[?group=&cursor=] ->
 *          200 {"databases":[Database…]} (+ "pagination":{"next"} when paged)
 *   GET    /v1/organizations/{org}/databases/{db}  -> 200 {"database":Database} |
 *          404 {"error":"could not find database with name X: record not found"}
 *   DELETE /v1/organizations/{org}/databases/{db}  -> 200 {"database":"X"} | 404
 *   POST   /v1/organizations/{org}/databases/{db}/auth/tokens?expiration=&authorization=
 *          -> 200 {"jwt":"…"} | 400 {"error":"Invalid expiration format"} | 404;
 *          a permissions body -> 400 "Permissions are not supported for db-api
 *          controlled databases"
 *   POST   /v1/organizations/{org}/databases/{db}/auth/rotate and
 *          /v1/organizations/{org}/groups/{g}/auth/rotate -> 200, every token of
 *          the group invalid
 *   GET    /v1/auth/validate -> 200 {"exp": <unix seconds> | -1} (any other
 *          method: 405)
 *   a wrong, missing or expired Platform API token -> 401 {"error":"…"}
 *   a group-scoped token (token_group) on a database of another group, or
 *   a create in another group -> 403 {"error":"…"}
 * Gateway: POST /v2/pipeline, database chosen by the first label of Host
 * ("<db>-<org>.localhost:PORT"): 404 until the database is ready, 401
 * {"error":"Unauthorized: `The JWT is invalid`"} for a token not minted for
 * it (or expired, or rotated), writes refused for read-only tokens, else
 * forwarded to tursodb.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "turso_emulator.h"

#define EMU_MAX_REQ (1024 * 1024)

typedef struct emu_token {
	char *jwt;
	int64_t exp_s; /* wall seconds; 0: never */
	bool ro;
	unsigned gen;  /* group generation at mint */
} emu_token;

typedef struct emu_db {
	char name[80];
	char group[80];
	char id[40];
	char host[200];
	int64_t ready_at_ms;
	emu_token *toks;
	size_t ntok;
} emu_db;

typedef struct emu_group {
	char name[80];
	unsigned gen;
} emu_group;

typedef struct emu_count {
	char op[16];
	int n;
} emu_count;

enum { C_READ, C_WAIT, C_WRITE };

typedef struct emu_conn {
	int fd;
	bool gateway;
	int state;
	char *in;
	size_t inlen, incap;
	char *out;
	size_t outlen, outoff;
	int64_t respond_at;
	bool drop;
} emu_conn;

struct turso_emu {
	pthread_t th;
	pthread_mutex_t mu;
	int wake[2];
	bool stop;
	int api_fd, gw_fd, api_port, gw_port;
	char api_url[64];

	char *org, *token, *token_group;
	int64_t token_exp;
	int libsql_port, dataplane, dup_status, page_size;
	int64_t ready_delay_ms;
	bool baton;
	int baton_seq;

	emu_group groups[16];
	size_t ngroups;
	emu_db *dbs;
	size_t ndb;
	turso_emu_fault *faults;
	size_t nfault;
	emu_count counts[32];
	size_t ncount;
	int mint_bodies;
	char *log;
	size_t loglen, logcap;

	emu_conn *conns;
	size_t nconn;
	CURL *curl;
};

typedef struct http_req {
	char method[16];
	char path[4096];
	char query[4096];
	char host[256];
	char auth[8192];
	const char *body;
	size_t body_len;
} http_req;

typedef struct http_ans {
	int status;
	char *body; /* malloc'd */
	int retry_after;
	int64_t delay_ms;
	bool drop;
} http_ans;

/* ------------------------------------------------------------------------ */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void rnd(void *buf, size_t n)
{
	if (getrandom(buf, n, 0) != (ssize_t)n)
		memset(buf, 0x5a, n);
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");
	if (p == NULL)
		abort();
	return p;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	va_list ap;
	char *p = NULL;
	va_start(ap, f);
	if (vasprintf(&p, f, ap) < 0)
		abort();
	va_end(ap);
	return p;
}

static char *jdump(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (s == NULL)
		abort();
	return s;
}

static char *err_body(const char *msg)
{
	return jdump(json_pack("{s:s}", "error", msg));
}

static void b64url(const unsigned char *in, size_t n, char *out)
{
	static const char a[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;
	for (i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		out[o++] = a[v >> 6 & 63];
		out[o++] = a[v & 63];
	}
	if (n - i == 1) {
		unsigned v = (unsigned)in[i] << 16;
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
	} else if (n - i == 2) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		out[o++] = a[v >> 6 & 63];
	}
	out[o] = '\0';
}

static void count_op(turso_emu *e, const char *op)
{
	size_t i;
	for (i = 0; i < e->ncount; i++)
		if (strcmp(e->counts[i].op, op) == 0) {
			e->counts[i].n++;
			return;
		}
	if (e->ncount < sizeof(e->counts) / sizeof(e->counts[0])) {
		snprintf(e->counts[e->ncount].op, sizeof e->counts[0].op, "%s", op);
		e->counts[e->ncount++].n = 1;
	}
}

static void log_line(turso_emu *e, const char *line)
{
	size_t n = strlen(line);
	if (e->loglen + n + 2 > e->logcap) {
		size_t c = e->logcap ? e->logcap * 2 : 4096;
		while (c < e->loglen + n + 2)
			c *= 2;
		e->log = realloc(e->log, c);
		if (e->log == NULL)
			abort();
		e->logcap = c;
	}
	memcpy(e->log + e->loglen, line, n);
	e->loglen += n;
	e->log[e->loglen++] = '\n';
	e->log[e->loglen] = '\0';
}

static emu_db *find_db(turso_emu *e, const char *name)
{
	size_t i;
	for (i = 0; i < e->ndb; i++)
		if (strcmp(e->dbs[i].name, name) == 0)
			return &e->dbs[i];
	return NULL;
}

static emu_group *find_group(turso_emu *e, const char *name)
{
	size_t i;
	for (i = 0; i < e->ngroups; i++)
		if (strcmp(e->groups[i].name, name) == 0)
			return &e->groups[i];
	return NULL;
}

static emu_db *add_db(turso_emu *e, const char *name, const char *group)
{
	emu_db *d;
	unsigned char r[16];
	char hex[33];
	int i;

	e->dbs = realloc(e->dbs, (e->ndb + 1) * sizeof *e->dbs);
	if (e->dbs == NULL)
		abort();
	d = &e->dbs[e->ndb++];
	memset(d, 0, sizeof *d);
	snprintf(d->name, sizeof d->name, "%s", name);
	snprintf(d->group, sizeof d->group, "%s", group);
	rnd(r, sizeof r);
	for (i = 0; i < 16; i++)
		sprintf(hex + 2 * i, "%02x", r[i]);
	snprintf(d->id, sizeof d->id, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
		 hex + 16, hex + 20);
	snprintf(d->host, sizeof d->host, "%s-%s.localhost:%d", name, e->org,
		 e->dataplane == TURSO_EMU_DIRECT ? e->libsql_port : e->gw_port);
	d->ready_at_ms = mono_ms() + e->ready_delay_ms;
	return d;
}

static void free_db_tokens(emu_db *d)
{
	size_t i;
	for (i = 0; i < d->ntok; i++)
		free(d->toks[i].jwt);
	free(d->toks);
	d->toks = NULL;
	d->ntok = 0;
}

static void del_db(turso_emu *e, emu_db *d)
{
	size_t i = (size_t)(d - e->dbs);
	free_db_tokens(d);
	memmove(&e->dbs[i], &e->dbs[i + 1], (e->ndb - i - 1) * sizeof *e->dbs);
	e->ndb--;
}

static json_t *db_json(const emu_db *d)
{
	return json_pack("{s:s, s:s, s:s, s:b, s:b, s:b, s:[s], s:s, s:s, s:s, s:s, s:b, s:n, "
			 "s:b, s:b, s:b, s:n}",
			 "Name", d->name, "DbId", d->id, "Hostname", d->host, "block_reads", 0,
			 "block_writes", 0, "allow_attach", 0, "regions", "aws-us-east-1",
			 "primaryRegion", "aws-us-east-1", "type", "logical", "version",
			 "tursodb-0.6.0", "group", d->group, "is_schema", 0, "schema",
			 "archived", 0, "sleeping", 0, "delete_protection", 0, "parent");
}

/* ------------------------------------------------------------------------ */
/* Platform API                                                              */
/* ------------------------------------------------------------------------ */

static bool query_get(const char *query, const char *key, char *out, size_t cap)
{
	size_t kl = strlen(key);
	const char *p = query;

	while (p && *p) {
		const char *amp = strchr(p, '&');
		size_t seg = amp ? (size_t)(amp - p) : strlen(p);
		if (seg > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
			size_t i, o = 0;
			for (i = kl + 1; i < seg && o + 1 < cap; i++) {
				if (p[i] == '%' && i + 2 < seg + 1 && isxdigit((unsigned char)p[i + 1]) &&
				    isxdigit((unsigned char)p[i + 2])) {
					char h[3] = { p[i + 1], p[i + 2], 0 };
					out[o++] = (char)strtol(h, NULL, 16);
					i += 2;
				} else {
					out[o++] = p[i] == '+' ? ' ' : p[i];
				}
			}
			out[o] = '\0';
			return true;
		}
		p = amp ? amp + 1 : NULL;
	}
	return false;
}

static int64_t expiration_seconds(const char *s, bool *ok)
{
	int64_t total = 0;
	const char *p = s;

	*ok = false;
	if (strcmp(s, "never") == 0 || strcmp(s, "none") == 0 || strcmp(s, "default") == 0) {
		*ok = true;
		return 0;
	}
	if (*p == '\0')
		return 0;
	while (*p) {
		int64_t v = 0;
		const char *d = p;
		while (isdigit((unsigned char)*p))
			v = v * 10 + (*p++ - '0');
		if (p == d)
			return 0;
		switch (*p++) {
		case 'w': total += v * 7 * 86400; break;
		case 'd': total += v * 86400; break;
		case 'h': total += v * 3600; break;
		case 'm': total += v * 60; break;
		case 's': total += v; break;
		default: return 0;
		}
	}
	*ok = total > 0;
	return total;
}

static const char *name_problem(turso_emu *e, const char *n)
{
	size_t l = strlen(n), i;
	if (l == 0 || l > 64)
		return "invalid database name: name must contain between 1 and 64 characters";
	for (i = 0; i < l; i++)
		if (!(islower((unsigned char)n[i]) || isdigit((unsigned char)n[i]) || n[i] == '-'))
			return "invalid database name: only lowercase letters, numbers and dashes";
	if (l + 1 + strlen(e->org) > 63)
		return "invalid database name: name too long for the organization";
	return NULL;
}

static void api_create(turso_emu *e, const http_req *rq, http_ans *a)
{
	json_error_t jerr;
	json_t *b = json_loadb(rq->body ? rq->body : "", rq->body_len, 0, &jerr);
	const char *name = b ? json_string_value(json_object_get(b, "name")) : NULL;
	const char *group = b ? json_string_value(json_object_get(b, "group")) : NULL;
	const char *prob;
	emu_db *d;

	if (name == NULL || group == NULL) {
		a->status = 400;
		a->body = err_body("name and group are required");
	} else if ((prob = name_problem(e, name)) != NULL) {
		a->status = 400;
		a->body = err_body(prob);
	} else if (find_group(e, group) == NULL) {
		a->status = 400;
		a->body = err_body("group not found");
	} else if (find_db(e, name) != NULL) {
		a->status = e->dup_status;
		if (e->dup_status == 400)
			a->body = err_body("database with same name already exists");
		else if (e->dup_status == 422)
			a->body = jdump(json_pack("{s:s}", "error",
						  "database name is not available"));
		else {
			char *m = fmt("database with name %s already exists", name);
			a->body = err_body(m);
			free(m);
		}
	} else {
		d = add_db(e, name, group);
		a->status = 200;
		a->body = jdump(json_pack("{s:{s:s, s:s, s:s}}", "database", "DbId", d->id,
					  "Hostname", d->host, "Name", d->name));
	}
	json_decref(b);
}

static void not_found(const char *name, http_ans *a)
{
	char *m = fmt("could not find database with name %s: record not found", name);
	a->status = 404;
	a->body = err_body(m);
	free(m);
}

static void api_list(turso_emu *e, const http_req *rq, http_ans *a)
{
	char group[128] = "", cursor[32] = "";
	bool has_group = query_get(rq->query, "group", group, sizeof group);
	size_t start = 0, i, taken = 0, idx = 0;
	json_t *arr = json_array(), *root;
	bool more = false;

	if (query_get(rq->query, "cursor", cursor, sizeof cursor))
		start = (size_t)strtoul(cursor, NULL, 10);
	for (i = 0; i < e->ndb; i++) {
		if (has_group && strcmp(e->dbs[i].group, group) != 0)
			continue;
		if (idx++ < start)
			continue;
		if (e->page_size > 0 && taken == (size_t)e->page_size) {
			more = true;
			break;
		}
		json_array_append_new(arr, db_json(&e->dbs[i]));
		taken++;
	}
	root = json_pack("{s:o}", "databases", arr);
	if (e->page_size > 0) {
		char nx[32];
		snprintf(nx, sizeof nx, "%zu", start + taken);
		json_object_set_new(root, "pagination",
				    json_pack("{s:o}", "next", more ? json_string(nx) : json_null()));
	}
	a->status = 200;
	a->body = jdump(root);
}

static void api_mint(turso_emu *e, emu_db *d, const http_req *rq, http_ans *a)
{
	char exp[64] = "never", auth[32] = "full-access";
	bool ok;
	int64_t secs;
	unsigned char sig[64];
	char h64[128], p64[512], s64[128], *payload;
	emu_token *t;
	emu_group *g;
	static const char hdr[] = "{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}";

	if (rq->body_len > 0) {
		e->mint_bodies++;
		a->status = 400;
		a->body = err_body("Permissions are not supported for db-api controlled databases");
		return;
	}
	query_get(rq->query, "expiration", exp, sizeof exp);
	query_get(rq->query, "authorization", auth, sizeof auth);
	secs = expiration_seconds(exp, &ok);
	if (!ok) {
		a->status = 400;
		a->body = err_body("Invalid expiration format");
		return;
	}
	if (strcmp(auth, "full-access") != 0 && strcmp(auth, "read-only") != 0) {
		a->status = 400;
		a->body = err_body("invalid authorization");
		return;
	}
	d->toks = realloc(d->toks, (d->ntok + 1) * sizeof *d->toks);
	if (d->toks == NULL)
		abort();
	t = &d->toks[d->ntok++];
	t->exp_s = secs ? (int64_t)time(NULL) + secs : 0;
	t->ro = strcmp(auth, "read-only") == 0;
	g = find_group(e, d->group);
	t->gen = g ? g->gen : 0;
	b64url((const unsigned char *)hdr, strlen(hdr), h64);
	if (t->exp_s)
		payload = fmt("{\"a\":\"%s\",\"iat\":%lld,\"exp\":%lld,\"id\":\"%s\"}",
			      t->ro ? "ro" : "rw", (long long)time(NULL), (long long)t->exp_s,
			      d->id);
	else
		payload = fmt("{\"a\":\"%s\",\"iat\":%lld,\"id\":\"%s\"}", t->ro ? "ro" : "rw",
			      (long long)time(NULL), d->id);
	b64url((const unsigned char *)payload, strlen(payload), p64);
	free(payload);
	rnd(sig, sizeof sig);
	b64url(sig, sizeof sig, s64);
	t->jwt = fmt("%s.%s.%s", h64, p64, s64);
	a->status = 200;
	a->body = jdump(json_pack("{s:s}", "jwt", t->jwt));
}

static void rotate_group(turso_emu *e, const char *group)
{
	emu_group *g = find_group(e, group);
	if (g)
		g->gen++;
}

/* Classify: op name and the database (or group) named in the path. */
static const char *classify(turso_emu *e, const http_req *rq, bool gateway, char *obj,
			    size_t cap, bool *org_ok)
{
	char pfx[160];
	size_t pl;
	const char *rest;

	obj[0] = '\0';
	*org_ok = true;
	if (gateway)
		return strcmp(rq->path, "/v2/pipeline") == 0 && strcmp(rq->method, "POST") == 0
			       ? "pipeline"
			       : "gateway-other";
	if (strcmp(rq->path, "/v1/auth/validate") == 0)
		return strcmp(rq->method, "GET") == 0 ? "validate" : "validate-method";
	if (strncmp(rq->path, "/v1/organizations/", 18) != 0)
		return "other";
	snprintf(pfx, sizeof pfx, "/v1/organizations/%s/", e->org);
	pl = strlen(pfx);
	if (strncmp(rq->path, pfx, pl) != 0) {
		*org_ok = false;
		return "other";
	}
	rest = rq->path + pl;
	if (strcmp(rest, "databases") == 0)
		return strcmp(rq->method, "POST") == 0 ? "create"
		       : strcmp(rq->method, "GET") == 0 ? "list"
							: "other";
	if (strncmp(rest, "databases/", 10) == 0) {
		const char *n = rest + 10, *sl = strchr(n, '/');
		size_t nl = sl ? (size_t)(sl - n) : strlen(n);
		snprintf(obj, cap, "%.*s", (int)nl, n);
		if (sl == NULL)
			return strcmp(rq->method, "GET") == 0      ? "get"
			       : strcmp(rq->method, "DELETE") == 0 ? "delete"
								   : "other";
		if (strcmp(sl, "/auth/tokens") == 0 && strcmp(rq->method, "POST") == 0)
			return "mint";
		if (strcmp(sl, "/auth/rotate") == 0 && strcmp(rq->method, "POST") == 0)
			return "rotate";
		return "other";
	}
	if (strncmp(rest, "groups/", 7) == 0) {
		const char *n = rest + 7, *sl = strchr(n, '/');
		if (sl && strcmp(sl, "/auth/rotate") == 0 && strcmp(rq->method, "POST") == 0) {
			snprintf(obj, cap, "%.*s", (int)(sl - n), n);
			return "rotate-group";
		}
	}
	return "other";
}

static void api_handle(turso_emu *e, const char *op, const char *obj, bool org_ok,
		       const http_req *rq, http_ans *a)
{
	char want[512];
	emu_db *d;

	snprintf(want, sizeof want, "Bearer %s", e->token);
	if (rq->auth[0] == '\0') {
		a->status = 401;
		a->body = err_body("missing authorization header");
		return;
	}
	if (strcmp(rq->auth, want) != 0) {
		a->status = 401;
		a->body = err_body(strncmp(rq->auth, "Bearer ", 7) == 0 &&
						   strchr(rq->auth, '.') == NULL
					   ? "token contains an invalid number of segments"
					   : "invalid token");
		return;
	}
	if (e->token_exp > 0 && e->token_exp <= (int64_t)time(NULL)) {
		a->status = 401;
		a->body = err_body("token expired");
		return;
	}
	if (strcmp(op, "validate-method") == 0) {
		a->status = 405;
		a->body = err_body("method not allowed");
		return;
	}
	if (!org_ok) {
		a->status = 403;
		a->body = err_body("you are not a member of organization");
		return;
	}
	if (e->token_group != NULL) {
		/* A group token reaches only its group's databases. */
		const char *g = NULL;
		json_t *b = NULL;
		json_error_t jerr;
		if (strcmp(op, "create") == 0) {
			b = json_loadb(rq->body ? rq->body : "", rq->body_len, 0, &jerr);
			g = b ? json_string_value(json_object_get(b, "group")) : NULL;
		} else if ((d = obj[0] ? find_db(e, obj) : NULL) != NULL) {
			g = d->group;
		}
		if (g != NULL && strcmp(g, e->token_group) != 0) {
			json_decref(b);
			a->status = 403;
			a->body = err_body("token is not authorized for this group");
			return;
		}
		json_decref(b);
	}
	if (strcmp(op, "validate") == 0) {
		a->status = 200;
		a->body = jdump(json_pack("{s:I}", "exp",
					  (json_int_t)(e->token_exp > 0 ? e->token_exp : -1)));
	} else if (strcmp(op, "create") == 0) {
		api_create(e, rq, a);
	} else if (strcmp(op, "list") == 0) {
		api_list(e, rq, a);
	} else if (strcmp(op, "get") == 0 || strcmp(op, "delete") == 0 ||
		   strcmp(op, "mint") == 0 || strcmp(op, "rotate") == 0) {
		d = find_db(e, obj);
		if (d == NULL) {
			not_found(obj, a);
		} else if (strcmp(op, "get") == 0) {
			a->status = 200;
			a->body = jdump(json_pack("{s:o}", "database", db_json(d)));
		} else if (strcmp(op, "delete") == 0) {
			a->status = 200;
			a->body = jdump(json_pack("{s:s}", "database", d->name));
			del_db(e, d);
		} else if (strcmp(op, "mint") == 0) {
			api_mint(e, d, rq, a);
		} else {
			rotate_group(e, d->group);
			a->status = 200;
			a->body = xstrdup("");
		}
	} else if (strcmp(op, "rotate-group") == 0) {
		if (find_group(e, obj) == NULL) {
			a->status = 404;
			a->body = err_body("group not found");
		} else {
			rotate_group(e, obj);
			a->status = 200;
			a->body = xstrdup("");
		}
	} else {
		a->status = 404;
		a->body = err_body("not found");
	}
}

/* ------------------------------------------------------------------------ */
/* Gateway                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct fwd_buf {
	char *p;
	size_t n;
} fwd_buf;

static size_t fwd_write(char *d, size_t s, size_t n, void *u)
{
	fwd_buf *b = u;
	b->p = realloc(b->p, b->n + s * n + 1);
	if (b->p == NULL)
		abort();
	memcpy(b->p + b->n, d, s * n);
	b->n += s * n;
	b->p[b->n] = '\0';
	return s * n;
}

static bool sql_is_write(const char *sql)
{
	static const char *reads[] = { "select", "with", "explain", "values" };
	size_t i;
	while (sql && isspace((unsigned char)*sql))
		sql++;
	if (sql == NULL)
		return false;
	for (i = 0; i < sizeof(reads) / sizeof(reads[0]); i++)
		if (strncasecmp(sql, reads[i], strlen(reads[i])) == 0)
			return false;
	return true;
}

static bool pipeline_writes(json_t *body)
{
	json_t *reqs = json_object_get(body, "requests"), *r;
	size_t i;
	json_array_foreach(reqs, i, r)
	{
		const char *type = json_string_value(json_object_get(r, "type"));
		if (type && strcmp(type, "execute") == 0) {
			if (sql_is_write(json_string_value(
				    json_object_get(json_object_get(r, "stmt"), "sql"))))
				return true;
		} else if (type && strcmp(type, "batch") == 0) {
			json_t *steps = json_object_get(json_object_get(r, "batch"), "steps"), *s;
			size_t j;
			json_array_foreach(steps, j, s)
			{
				if (sql_is_write(json_string_value(
					    json_object_get(json_object_get(s, "stmt"), "sql"))))
					return true;
			}
		}
	}
	return false;
}

static bool only_close(json_t *body)
{
	json_t *reqs = json_object_get(body, "requests"), *r;
	size_t i;
	if (!json_is_array(reqs) || json_array_size(reqs) == 0)
		return false;
	json_array_foreach(reqs, i, r)
	{
		const char *type = json_string_value(json_object_get(r, "type"));
		if (type == NULL || strcmp(type, "close") != 0)
			return false;
	}
	return true;
}

static void gateway_handle(turso_emu *e, const http_req *rq, http_ans *a)
{
	char label[256], host[256], *colon, *dot, suffix[128];
	size_t ll, sl;
	emu_db *d;
	emu_token *tok = NULL;
	emu_group *g;
	json_t *body = NULL;
	json_error_t jerr;
	size_t i;

	snprintf(host, sizeof host, "%s", rq->host);
	if ((colon = strchr(host, ':')) != NULL)
		*colon = '\0';
	snprintf(label, sizeof label, "%s", host);
	if ((dot = strchr(label, '.')) != NULL)
		*dot = '\0';
	snprintf(suffix, sizeof suffix, "-%s", e->org);
	ll = strlen(label);
	sl = strlen(suffix);
	if (ll > sl && strcmp(label + ll - sl, suffix) == 0)
		label[ll - sl] = '\0';
	d = find_db(e, label);
	if (d == NULL || mono_ms() < d->ready_at_ms) {
		/* byte-identical for "no such database" and "not ready yet" */
		a->status = 404;
		a->body = xstrdup("Not Found");
		return;
	}
	g = find_group(e, d->group);
	if (strncmp(rq->auth, "Bearer ", 7) == 0) {
		for (i = 0; i < d->ntok; i++)
			if (strcmp(d->toks[i].jwt, rq->auth + 7) == 0)
				tok = &d->toks[i];
	}
	if (tok == NULL || (g && tok->gen != g->gen) ||
	    (tok->exp_s != 0 && tok->exp_s <= (int64_t)time(NULL))) {
		a->status = 401;
		a->body = err_body(rq->auth[0] ? "Unauthorized: `The JWT is invalid`"
					       : "Unauthorized: `Expected authorization header but "
						 "none given`");
		return;
	}
	body = json_loadb(rq->body ? rq->body : "", rq->body_len, 0, &jerr);
	if (body == NULL) {
		a->status = 400;
		a->body = xstrdup("invalid JSON body");
		return;
	}
	if (e->baton && json_is_string(json_object_get(body, "baton")) && only_close(body)) {
		count_op(e, "close");
		a->status = 200;
		a->body = xstrdup("{\"baton\":null,\"base_url\":null,\"results\":[{\"type\":\"ok\","
				  "\"response\":{\"type\":\"close\"}}]}");
		json_decref(body);
		return;
	}
	if (tok->ro && pipeline_writes(body)) {
		json_t *res = json_array(), *r;
		json_array_foreach(json_object_get(body, "requests"), i, r)
		{
			(void)r;
			json_array_append_new(
				res, json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error",
					       "message", "attempt to write a readonly database",
					       "code", "SQLITE_READONLY"));
		}
		a->status = 200;
		a->body = jdump(json_pack("{s:n, s:n, s:o}", "baton", "base_url", "results", res));
		json_decref(body);
		return;
	}
	json_decref(body);
	if (e->libsql_port <= 0) {
		a->status = 502;
		a->body = err_body("no libSQL server behind the gateway");
		return;
	}
	{
		char url[128];
		fwd_buf fb = { NULL, 0 };
		struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
		long st = 0;
		CURLcode cc;

		snprintf(url, sizeof url, "http://127.0.0.1:%d/v2/pipeline", e->libsql_port);
		curl_easy_reset(e->curl);
		curl_easy_setopt(e->curl, CURLOPT_URL, url);
		curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
		curl_easy_setopt(e->curl, CURLOPT_POSTFIELDSIZE, (long)rq->body_len);
		curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, fwd_write);
		curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, &fb);
		curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, 10000L);
		curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(e->curl, CURLOPT_PROXY, "");
		cc = curl_easy_perform(e->curl);
		curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &st);
		curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, NULL);
		curl_slist_free_all(h);
		if (cc != CURLE_OK) {
			a->status = 502;
			a->body = err_body(curl_easy_strerror(cc));
			free(fb.p);
			return;
		}
		a->status = (int)st;
		a->body = fb.p ? fb.p : xstrdup("");
		if (e->baton && st == 200) {
			json_t *r = json_loads(a->body, 0, &jerr);
			if (r != NULL) {
				char b[32];
				snprintf(b, sizeof b, "baton-%d", ++e->baton_seq);
				json_object_set_new(r, "baton", json_string(b));
				free(a->body);
				a->body = jdump(r);
			}
		}
	}
}

/* ------------------------------------------------------------------------ */
/* HTTP                                                                      */
/* ------------------------------------------------------------------------ */

static const char *reason(int st)
{
	switch (st) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	default: return "Status";
	}
}

/* Returns 1 when a full request is in c->in, 0 when more is needed, -1 on
 * a malformed request. */
static int parse_req(emu_conn *c, http_req *rq)
{
	char *end, *line, *save = NULL, *hdrs;
	size_t hlen, clen = 0;
	char target[4096];
	char *q;

	memset(rq, 0, sizeof *rq);
	if (c->inlen < 4)
		return 0;
	c->in[c->inlen] = '\0';
	end = strstr(c->in, "\r\n\r\n");
	if (end == NULL)
		return c->inlen > 65536 ? -1 : 0;
	hlen = (size_t)(end - c->in) + 4;
	hdrs = strndup(c->in, hlen - 4);
	if (hdrs == NULL)
		abort();
	line = strtok_r(hdrs, "\r\n", &save);
	if (line == NULL || sscanf(line, "%15s %4095s", rq->method, target) != 2) {
		free(hdrs);
		return -1;
	}
	while ((line = strtok_r(NULL, "\r\n", &save)) != NULL) {
		char *colon = strchr(line, ':'), *v;
		if (colon == NULL)
			continue;
		*colon = '\0';
		v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		if (strcasecmp(line, "content-length") == 0)
			clen = (size_t)strtoul(v, NULL, 10);
		else if (strcasecmp(line, "host") == 0)
			snprintf(rq->host, sizeof rq->host, "%s", v);
		else if (strcasecmp(line, "authorization") == 0)
			snprintf(rq->auth, sizeof rq->auth, "%s", v);
		else if (strcasecmp(line, "transfer-encoding") == 0) {
			free(hdrs);
			return -1;
		}
	}
	free(hdrs);
	if (clen > EMU_MAX_REQ)
		return -1;
	if (c->inlen < hlen + clen)
		return 0;
	q = strchr(target, '?');
	if (q) {
		*q = '\0';
		snprintf(rq->query, sizeof rq->query, "%s", q + 1);
	}
	snprintf(rq->path, sizeof rq->path, "%s", target);
	rq->body = c->in + hlen;
	rq->body_len = clen;
	return 1;
}

static turso_emu_fault *take_fault(turso_emu *e, const char *op)
{
	size_t i;
	for (i = 0; i < e->nfault; i++) {
		turso_emu_fault *f = &e->faults[i];
		if (f->count > 0 && (strcmp(f->op, op) == 0 || strcmp(f->op, "any") == 0)) {
			f->count--;
			return f;
		}
	}
	return NULL;
}

static void handle_request(turso_emu *e, emu_conn *c, const http_req *rq)
{
	char obj[256], line[8448];
	bool org_ok;
	const char *op;
	turso_emu_fault *f;
	http_ans a = { 0 };
	char *hdr;

	pthread_mutex_lock(&e->mu);
	op = classify(e, rq, c->gateway, obj, sizeof obj, &org_ok);
	count_op(e, op);
	snprintf(line, sizeof line, "%s%s %s%s%s", c->gateway ? "[gw] " : "", rq->method, rq->path,
		 rq->query[0] ? "?" : "", rq->query);
	log_line(e, line);
	f = take_fault(e, op);
	a.retry_after = -1;
	if (f != NULL && !f->perform && (f->status != 0 || f->drop)) {
		a.status = f->status;
		a.body = f->body ? xstrdup(f->body) : err_body(reason(f->status));
	} else {
		if (c->gateway)
			gateway_handle(e, rq, &a);
		else
			api_handle(e, op, obj, org_ok, rq, &a);
		if (f != NULL && f->status != 0) {
			free(a.body);
			a.status = f->status;
			a.body = f->body ? xstrdup(f->body) : err_body(reason(f->status));
		}
	}
	if (f != NULL) {
		a.retry_after = f->retry_after;
		a.delay_ms = f->delay_ms;
		a.drop = f->drop;
	}
	pthread_mutex_unlock(&e->mu);

	if (a.retry_after >= 0)
		hdr = fmt("Retry-After: %d\r\n", a.retry_after);
	else
		hdr = xstrdup("");
	free(c->out);
	c->out = fmt("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
		     "Connection: close\r\n\r\n%s",
		     a.status, reason(a.status),
		     a.body && a.body[0] == '{' ? "application/json" : "text/plain",
		     a.body ? strlen(a.body) : 0, hdr, a.body ? a.body : "");
	c->outlen = strlen(c->out);
	c->outoff = 0;
	c->drop = a.drop;
	c->respond_at = mono_ms() + a.delay_ms;
	c->state = a.delay_ms > 0 ? C_WAIT : C_WRITE;
	free(hdr);
	free(a.body);
}

static void close_conn(turso_emu *e, size_t i)
{
	close(e->conns[i].fd);
	free(e->conns[i].in);
	free(e->conns[i].out);
	memmove(&e->conns[i], &e->conns[i + 1], (e->nconn - i - 1) * sizeof *e->conns);
	e->nconn--;
}

static void accept_on(turso_emu *e, int lfd, bool gateway)
{
	int fd = accept(lfd, NULL, NULL);
	emu_conn *c;
	if (fd < 0)
		return;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	e->conns = realloc(e->conns, (e->nconn + 1) * sizeof *e->conns);
	if (e->conns == NULL)
		abort();
	c = &e->conns[e->nconn++];
	memset(c, 0, sizeof *c);
	c->fd = fd;
	c->gateway = gateway;
	c->state = C_READ;
}

static void *emu_thread(void *arg)
{
	turso_emu *e = arg;

	for (;;) {
		size_t n = 3 + e->nconn, i;
		struct pollfd *p = calloc(n, sizeof *p);
		int64_t now = mono_ms(), timeout = 1000;
		bool stop;

		pthread_mutex_lock(&e->mu);
		stop = e->stop;
		pthread_mutex_unlock(&e->mu);
		if (stop) {
			free(p);
			break;
		}
		p[0].fd = e->wake[0];
		p[0].events = POLLIN;
		p[1].fd = e->api_fd;
		p[1].events = POLLIN;
		p[2].fd = e->gw_fd;
		p[2].events = POLLIN;
		for (i = 0; i < e->nconn; i++) {
			emu_conn *c = &e->conns[i];
			p[3 + i].fd = c->fd;
			p[3 + i].events = c->state == C_READ ? POLLIN
					  : c->state == C_WRITE ? POLLOUT
								: 0;
			if (c->state == C_WAIT && c->respond_at - now < timeout)
				timeout = c->respond_at - now < 0 ? 0 : c->respond_at - now;
		}
		poll(p, n, (int)timeout);
		if (p[0].revents & POLLIN) {
			char b[16];
			if (read(e->wake[0], b, sizeof b) < 0) {
				/* nothing: just woken */
			}
		}
		now = mono_ms();
		/* connections first (indexes shift when closing: go backwards) */
		for (i = e->nconn; i-- > 0;) {
			emu_conn *c = &e->conns[i];
			short rev = 3 + i < n ? p[3 + i].revents : 0;
			if (3 + i >= n)
				continue;
			if (c->state == C_READ && (rev & (POLLIN | POLLHUP | POLLERR))) {
				ssize_t r;
				http_req rq;
				int pr;
				if (c->inlen + 65536 + 1 > c->incap) {
					c->incap = c->inlen + 65536 + 1;
					c->in = realloc(c->in, c->incap);
					if (c->in == NULL)
						abort();
				}
				r = read(c->fd, c->in + c->inlen, c->incap - c->inlen - 1);
				if (r <= 0) {
					if (r < 0 && (errno == EAGAIN || errno == EINTR))
						continue;
					close_conn(e, i);
					continue;
				}
				c->inlen += (size_t)r;
				pr = parse_req(c, &rq);
				if (pr < 0 || c->inlen > EMU_MAX_REQ + 65536) {
					close_conn(e, i);
					continue;
				}
				if (pr == 1)
					handle_request(e, c, &rq);
			}
			if (c->state == C_WAIT && now >= c->respond_at)
				c->state = C_WRITE;
			if (c->state == C_WRITE && c->drop) {
				close_conn(e, i);
				continue;
			}
			if (c->state == C_WRITE) {
				ssize_t w = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
						 MSG_NOSIGNAL);
				if (w < 0 && (errno == EAGAIN || errno == EINTR))
					continue;
				if (w <= 0) {
					close_conn(e, i);
					continue;
				}
				c->outoff += (size_t)w;
				if (c->outoff == c->outlen) {
					shutdown(c->fd, SHUT_WR);
					close_conn(e, i);
				}
			}
		}
		if (p[1].revents & POLLIN)
			accept_on(e, e->api_fd, false);
		if (p[2].revents & POLLIN)
			accept_on(e, e->gw_fd, true);
		free(p);
	}
	return NULL;
}

static int listen_any(int *port)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	*port = ntohs(sa.sin_port);
	return fd;
}

int turso_emu_start(turso_emu **out, const turso_emu_options *o)
{
	turso_emu *e = calloc(1, sizeof *e);
	char *groups, *tok, *save = NULL;

	*out = NULL;
	if (e == NULL || o == NULL || o->api_token == NULL)
		goto fail;
	e->org = xstrdup(o->org ? o->org : "acme");
	e->token = xstrdup(o->api_token);
	e->token_group = o->token_group ? xstrdup(o->token_group) : NULL;
	e->token_exp = o->api_token_exp;
	e->libsql_port = o->libsql_port;
	e->dataplane = o->dataplane;
	e->dup_status = o->duplicate_status ? o->duplicate_status : 409;
	e->page_size = o->page_size;
	e->ready_delay_ms = o->ready_delay_ms;
	e->baton = o->gateway_baton;
	e->api_fd = e->gw_fd = e->wake[0] = e->wake[1] = -1;
	groups = xstrdup(o->groups ? o->groups : "default");
	for (tok = strtok_r(groups, ",", &save); tok && e->ngroups < 16;
	     tok = strtok_r(NULL, ",", &save))
		snprintf(e->groups[e->ngroups++].name, sizeof e->groups[0].name, "%s", tok);
	free(groups);
	pthread_mutex_init(&e->mu, NULL);
	e->curl = curl_easy_init();
	if (e->curl == NULL || pipe(e->wake) != 0)
		goto fail;
	e->api_fd = listen_any(&e->api_port);
	e->gw_fd = listen_any(&e->gw_port);
	if (e->api_fd < 0 || e->gw_fd < 0)
		goto fail;
	snprintf(e->api_url, sizeof e->api_url, "http://127.0.0.1:%d", e->api_port);
	if (pthread_create(&e->th, NULL, emu_thread, e) != 0)
		goto fail;
	*out = e;
	return 0;
fail:
	fprintf(stderr, "turso emulator: cannot start: %s\n", strerror(errno));
	if (e) {
		if (e->api_fd >= 0)
			close(e->api_fd);
		if (e->gw_fd >= 0)
			close(e->gw_fd);
		if (e->wake[0] >= 0) {
			close(e->wake[0]);
			close(e->wake[1]);
		}
		if (e->curl)
			curl_easy_cleanup(e->curl);
		free(e->org);
		free(e->token);
		free(e->token_group);
		free(e);
	}
	return -1;
}

void turso_emu_stop(turso_emu *e)
{
	size_t i;

	if (e == NULL)
		return;
	pthread_mutex_lock(&e->mu);
	e->stop = true;
	pthread_mutex_unlock(&e->mu);
	if (write(e->wake[1], "x", 1) < 0) {
		/* the thread wakes within a second anyway */
	}
	pthread_join(e->th, NULL);
	while (e->nconn > 0)
		close_conn(e, e->nconn - 1);
	free(e->conns);
	close(e->api_fd);
	close(e->gw_fd);
	close(e->wake[0]);
	close(e->wake[1]);
	for (i = 0; i < e->ndb; i++)
		free_db_tokens(&e->dbs[i]);
	free(e->dbs);
	free(e->faults);
	free(e->log);
	curl_easy_cleanup(e->curl);
	pthread_mutex_destroy(&e->mu);
	free(e->org);
	free(e->token);
	free(e->token_group);
	free(e);
}

const char *turso_emu_api_url(const turso_emu *e)
{
	return e->api_url;
}

int turso_emu_gateway_port(const turso_emu *e)
{
	return e->gw_port;
}

void turso_emu_set_ready_delay(turso_emu *e, int64_t ms)
{
	pthread_mutex_lock(&e->mu);
	e->ready_delay_ms = ms;
	pthread_mutex_unlock(&e->mu);
}

void turso_emu_set_duplicate_status(turso_emu *e, int status)
{
	pthread_mutex_lock(&e->mu);
	e->dup_status = status;
	pthread_mutex_unlock(&e->mu);
}

void turso_emu_add_fault(turso_emu *e, const turso_emu_fault *f)
{
	pthread_mutex_lock(&e->mu);
	e->faults = realloc(e->faults, (e->nfault + 1) * sizeof *e->faults);
	if (e->faults == NULL)
		abort();
	e->faults[e->nfault++] = *f;
	pthread_mutex_unlock(&e->mu);
}

void turso_emu_clear_faults(turso_emu *e)
{
	pthread_mutex_lock(&e->mu);
	e->nfault = 0;
	pthread_mutex_unlock(&e->mu);
}

int turso_emu_count(turso_emu *e, const char *op)
{
	size_t i;
	int n = 0;
	pthread_mutex_lock(&e->mu);
	for (i = 0; i < e->ncount; i++)
		if (strcmp(e->counts[i].op, op) == 0)
			n = e->counts[i].n;
	pthread_mutex_unlock(&e->mu);
	return n;
}

int turso_emu_mint_bodies(turso_emu *e)
{
	int n;
	pthread_mutex_lock(&e->mu);
	n = e->mint_bodies;
	pthread_mutex_unlock(&e->mu);
	return n;
}

bool turso_emu_has_db(turso_emu *e, const char *name)
{
	bool r;
	pthread_mutex_lock(&e->mu);
	r = find_db(e, name) != NULL;
	pthread_mutex_unlock(&e->mu);
	return r;
}

int turso_emu_db_count(turso_emu *e)
{
	int n;
	pthread_mutex_lock(&e->mu);
	n = (int)e->ndb;
	pthread_mutex_unlock(&e->mu);
	return n;
}

void turso_emu_put_db(turso_emu *e, const char *name, const char *group)
{
	pthread_mutex_lock(&e->mu);
	if (find_db(e, name) == NULL)
		add_db(e, name, group)->ready_at_ms = 0;
	pthread_mutex_unlock(&e->mu);
}

void turso_emu_db_group(turso_emu *e, const char *name, char *out, size_t cap)
{
	emu_db *d;
	pthread_mutex_lock(&e->mu);
	d = find_db(e, name);
	snprintf(out, cap, "%s", d ? d->group : "");
	pthread_mutex_unlock(&e->mu);
}

char *turso_emu_request_log(turso_emu *e)
{
	char *s;
	pthread_mutex_lock(&e->mu);
	s = xstrdup(e->log ? e->log : "");
	pthread_mutex_unlock(&e->mu);
	return s;
}

/* ------------------------------------------------------------------------ */
/* tursodb --sync-server                                                     */
/* ------------------------------------------------------------------------ */

const char *turso_libsql_binary(void)
{
	static char path[4096];
	const char *env = getenv("ENVDB_TURSODB"), *bd = getenv("ENVDB_TEST_BUILDDIR");

	if (env != NULL && env[0] != '\0' && access(env, X_OK) == 0)
		return env;
	if (bd != NULL) {
		snprintf(path, sizeof path,
			 "%s/.npm-turso/node_modules/@tursodatabase/cli-linux-x64-gnu/tursodb", bd);
		if (access(path, X_OK) == 0)
			return path;
	}
	return NULL;
}

static bool port_open(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;
	if (fd < 0)
		return false;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	close(fd);
	return ok;
}

int turso_libsql_start(const char *binary, const char *dir, pid_t *pid, int *port)
{
	char db[4096], addr[64], logp[4096];
	int fd, p, i;
	pid_t child;

	fd = listen_any(&p);
	if (fd < 0)
		return -1;
	close(fd); /* a small race with other processes; retried below */
	snprintf(db, sizeof db, "%s/libsql.db", dir);
	snprintf(logp, sizeof logp, "%s/tursodb.log", dir);
	snprintf(addr, sizeof addr, "127.0.0.1:%d", p);
	child = fork();
	if (child < 0)
		return -1;
	if (child == 0) {
		int lf = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0600);
		int nul = open("/dev/null", O_RDONLY);
		if (lf >= 0) {
			dup2(lf, 1);
			dup2(lf, 2);
		}
		if (nul >= 0)
			dup2(nul, 0);
		execl(binary, binary, db, "--sync-server", addr, (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 300; i++) {
		int st;
		struct timespec ts = { 0, 50 * 1000000L };
		if (port_open(p)) {
			*pid = child;
			*port = p;
			return 0;
		}
		if (waitpid(child, &st, WNOHANG) == child) {
			fprintf(stderr, "tursodb exited early (see %s)\n", logp);
			return -1;
		}
		nanosleep(&ts, NULL);
	}
	turso_libsql_stop(child);
	return -1;
}

void turso_libsql_stop(pid_t pid)
{
	int st, i;
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	for (i = 0; i < 100; i++) {
		struct timespec ts = { 0, 50 * 1000000L };
		if (waitpid(pid, &st, WNOHANG) == pid)
			return;
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}
