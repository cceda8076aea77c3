/*
 * core/manifest.c — read and validate the YAML manifest (envdb.yaml).
 *
 * The manifest is parsed with libyaml's event API into a small tree, and the
 * tree is then checked against the schema below.  Every problem is reported
 * as "FILE:LINE:COLUMN: KEY.PATH: cause" (ENVDB_ERR_CONFIG), unknown keys
 * included, so a typo never goes unnoticed.  Hostile input is bounded: file
 * size, nesting depth, node count and scalar length are limited, and anchors
 * and aliases are refused (no "billion laughs").
 *
 *   version: 1                          required
 *   control_plane: control.db           default control.db (an SQLite file), or
 *   control_plane: {driver: sqlite, path: FILE}
 *   control_plane: {driver: postgresql, conninfo_file: FILE | conninfo_env: VAR,
 *                   schema: NAME}      (never an inline conninfo or password)
 *   plugin_dir: DIR                     optional (replaces the system directory)
 *   plugin_path: [DIR, ...]             optional, searched before plugin_dir
 *   defaults: {driver, region, plan, storage_limit_mb, encryptor}
 *   provisioning: {lease_seconds, delete_grace_seconds}
 *   credentials: {rotation_overlap_seconds, expiry_horizon_seconds}
 *   (the *_seconds keys take a duration: plain seconds or 90s, 15m, 1h30m, 7d)
 *   resolve: {cache_size, cache_ttl_ms}
 *   control_plane_busy_timeout_ms: 5000
 *   legacy: {register_shim, encryptor}
 *   plugins: [{name, kind, path, critical, call_timeout_ms, config: {KEY: SCALAR}}]
 *
 * Relative paths resolve against the manifest's directory.  Plugin
 * configuration keys are checked against what each plugin declares by the
 * loader (loader.c), which also resolves `<key>_file` / `<key>_env` secret
 * references; here they only have to be well-formed.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "duration.h"
#include "internal.h"

#define MANIFEST_MAX_BYTES (1024 * 1024)
#define MANIFEST_MAX_DEPTH 16
#define MANIFEST_MAX_NODES 20000
#define MANIFEST_MAX_SCALAR 4096
#define MANIFEST_PATH_MAX 512

/* ------------------------------------------------------------------------ */
/* The tree                                                                  */
/* ------------------------------------------------------------------------ */

enum ynode_type { YN_SCALAR, YN_MAP, YN_SEQ };

typedef struct ynode {
	enum ynode_type type;
	char *value; /* scalar text */
	bool plain;  /* unquoted scalar */
	int line, column;
	struct ynode **items; /* map: key, value, key, value...; seq: items */
	size_t n, cap;
} ynode;

static void ynode_free(ynode *n)
{
	size_t i;

	if (n == NULL)
		return;
	for (i = 0; i < n->n; i++)
		ynode_free(n->items[i]);
	free(n->items);
	free(n->value);
	free(n);
}

static int ynode_append(ynode *parent, ynode *child)
{
	if (parent->n == parent->cap) {
		size_t cap = parent->cap ? parent->cap * 2 : 8;
		ynode **items = realloc(parent->items, cap * sizeof(*items));
		if (items == NULL)
			return ENVDB_ERR_NOMEM;
		parent->items = items;
		parent->cap = cap;
	}
	parent->items[parent->n++] = child;
	return ENVDB_OK;
}

static bool ynode_is_null(const ynode *n)
{
	return n == NULL || (n->type == YN_SCALAR && n->plain &&
			     (n->value[0] == '\0' || strcmp(n->value, "~") == 0 ||
			      strcmp(n->value, "null") == 0 || strcmp(n->value, "Null") == 0 ||
			      strcmp(n->value, "NULL") == 0));
}

static const char *ynode_type_name(const ynode *n)
{
	if (ynode_is_null(n))
		return "nothing";
	switch (n->type) {
	case YN_MAP:
		return "a mapping";
	case YN_SEQ:
		return "a list";
	default:
		return "a scalar";
	}
}

/* ------------------------------------------------------------------------ */
/* Parsing: events → tree                                                    */
/* ------------------------------------------------------------------------ */

static int yaml_fail(const char *file, const yaml_parser_t *p)
{
	const char *problem = p->problem ? p->problem : "malformed YAML";

	if (p->error == YAML_MEMORY_ERROR)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: out of memory while parsing", file);
	if (p->context != NULL)
		return envdbi_error(ENVDB_ERR_CONFIG, NULL, "%s:%zu:%zu: yaml syntax error: %s %s",
				    file, p->problem_mark.line + 1, p->problem_mark.column + 1,
				    problem, p->context);
	if (p->error == YAML_READER_ERROR)
		return envdbi_error(ENVDB_ERR_CONFIG, NULL, "%s: byte %zu: invalid input: %s", file,
				    p->problem_offset, problem);
	return envdbi_error(ENVDB_ERR_CONFIG, NULL, "%s:%zu:%zu: yaml syntax error: %s", file,
			    p->problem_mark.line + 1, p->problem_mark.column + 1, problem);
}

static int at_error(const char *file, const yaml_mark_t *mark, const char *msg)
{
	return envdbi_error(ENVDB_ERR_CONFIG, NULL, "%s:%zu:%zu: %s", file, mark->line + 1,
			    mark->column + 1, msg);
}

static ynode *ynode_new(enum ynode_type type, const yaml_mark_t *mark)
{
	ynode *n = calloc(1, sizeof(*n));

	if (n == NULL)
		return NULL;
	n->type = type;
	n->line = (int)mark->line + 1;
	n->column = (int)mark->column + 1;
	return n;
}

/* Attach a finished node to the innermost open container, or make it the
 * root. */
static int attach(ynode **stack, size_t depth, ynode **root, ynode *node)
{
	if (depth == 0) {
		*root = node;
		return ENVDB_OK;
	}
	return ynode_append(stack[depth - 1], node);
}

static int parse_tree(ynode **out, FILE *fp, const char *file)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	ynode *stack[MANIFEST_MAX_DEPTH];
	ynode *root = NULL, *node = NULL;
	size_t depth = 0, nodes = 0;
	int documents = 0, rc = ENVDB_OK;
	bool done = false;

	*out = NULL;
	if (!yaml_parser_initialize(&parser))
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: cannot initialise parser", file);
	yaml_parser_set_input_file(&parser, fp);

	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			rc = yaml_fail(file, &parser);
			goto cleanup;
		}
		node = NULL;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++documents > 1) {
				rc = at_error(
				    file, &ev.start_mark,
				    "more than one YAML document; a manifest is one document");
				goto event_fail;
			}
			break;
		case YAML_ALIAS_EVENT:
			rc =
			    at_error(file, &ev.start_mark, "aliases are not allowed in a manifest");
			goto event_fail;
		case YAML_SCALAR_EVENT:
		case YAML_MAPPING_START_EVENT:
		case YAML_SEQUENCE_START_EVENT: {
			const yaml_char_t *anchor =
			    ev.type == YAML_SCALAR_EVENT          ? ev.data.scalar.anchor
			    : ev.type == YAML_MAPPING_START_EVENT ? ev.data.mapping_start.anchor
								  : ev.data.sequence_start.anchor;
			if (anchor != NULL) {
				rc = at_error(file, &ev.start_mark,
					      "anchors are not allowed in a manifest");
				goto event_fail;
			}
			if (++nodes > MANIFEST_MAX_NODES) {
				rc = at_error(file, &ev.start_mark, "too many nodes");
				goto event_fail;
			}
			if (ev.type == YAML_SCALAR_EVENT) {
				if (ev.data.scalar.length > MANIFEST_MAX_SCALAR) {
					rc = at_error(file, &ev.start_mark, "value is too long");
					goto event_fail;
				}
				if (memchr(ev.data.scalar.value, '\0', ev.data.scalar.length)) {
					rc = at_error(file, &ev.start_mark,
						      "value contains a NUL character");
					goto event_fail;
				}
				node = ynode_new(YN_SCALAR, &ev.start_mark);
				if (node == NULL ||
				    (node->value = strndup((const char *)ev.data.scalar.value,
							   ev.data.scalar.length)) == NULL) {
					ynode_free(node);
					rc = envdbi_error(ENVDB_ERR_NOMEM, NULL,
							  "%s: out of memory", file);
					goto event_fail;
				}
				node->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
				if (attach(stack, depth, &root, node) != ENVDB_OK) {
					ynode_free(node);
					rc = envdbi_error(ENVDB_ERR_NOMEM, NULL,
							  "%s: out of memory", file);
					goto event_fail;
				}
				break;
			}
			if (depth == MANIFEST_MAX_DEPTH) {
				rc = at_error(file, &ev.start_mark, "nesting is too deep");
				goto event_fail;
			}
			node = ynode_new(ev.type == YAML_MAPPING_START_EVENT ? YN_MAP : YN_SEQ,
					 &ev.start_mark);
			if (node == NULL || attach(stack, depth, &root, node) != ENVDB_OK) {
				ynode_free(node);
				rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: out of memory", file);
				goto event_fail;
			}
			stack[depth++] = node;
			break;
		}
		case YAML_MAPPING_END_EVENT:
		case YAML_SEQUENCE_END_EVENT:
			if (depth > 0)
				depth--;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
		continue;
	event_fail:
		yaml_event_delete(&ev);
		goto cleanup;
	}
	if (root == NULL) {
		rc = envdbi_error(ENVDB_ERR_CONFIG, NULL, "%s:1:1: the manifest is empty", file);
		goto cleanup;
	}
	*out = root;
	root = NULL;
cleanup:
	ynode_free(root);
	yaml_parser_delete(&parser);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Schema checks                                                             */
/* ------------------------------------------------------------------------ */

typedef struct mctx {
	const char *file; /* manifest path as shown in messages */
	envdbi_manifest *m;
} mctx;

static int node_error(const mctx *c, const ynode *n, const char *path, const char *fmt, ...)
    ENVDB_PRINTF(4, 5);

static int node_error(const mctx *c, const ynode *n, const char *path, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (path != NULL && path[0] != '\0')
		return envdbi_error(ENVDB_ERR_CONFIG, NULL, "%s:%d:%d: %s: %s", c->file,
				    n ? n->line : 1, n ? n->column : 1, path, msg);
	return envdbi_error(ENVDB_ERR_CONFIG, NULL, "%s:%d:%d: %s", c->file, n ? n->line : 1,
			    n ? n->column : 1, msg);
}

static void path_join(char *dst, size_t cap, const char *path, const char *key)
{
	int n;

	if (path == NULL || path[0] == '\0')
		n = snprintf(dst, cap, "%s", key);
	else
		n = snprintf(dst, cap, "%s.%s", path, key);
	if (n < 0 || (size_t)n >= cap)
		dst[cap - 1] = '\0'; /* a cut key path still locates the problem */
}

static bool in_list(const char *s, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

/* The node must be a mapping (or null, meaning empty).  Every key must be a
 * scalar, unique, and (when `allowed` is given) one of `allowed`. */
static int check_map(const mctx *c, const ynode *n, const char *path, const char *const *allowed)
{
	char kp[MANIFEST_PATH_MAX];
	size_t i, j;

	if (ynode_is_null(n))
		return ENVDB_OK;
	if (n->type != YN_MAP)
		return node_error(c, n, path, "expected a mapping, found %s", ynode_type_name(n));
	for (i = 0; i + 1 < n->n; i += 2) {
		const ynode *k = n->items[i];
		if (k->type != YN_SCALAR)
			return node_error(c, k, path, "keys must be plain words, found %s",
					  ynode_type_name(k));
		path_join(kp, sizeof(kp), path, k->value);
		if (allowed != NULL && !in_list(k->value, allowed))
			return node_error(c, k, kp, "unknown key");
		for (j = 0; j < i; j += 2)
			if (strcmp(n->items[j]->value, k->value) == 0)
				return node_error(c, k, kp, "duplicate key (first at line %d)",
						  n->items[j]->line);
	}
	return ENVDB_OK;
}

static const ynode *map_get(const ynode *map, const char *key, const ynode **key_node)
{
	size_t i;

	if (ynode_is_null(map) || map->type != YN_MAP)
		return NULL;
	for (i = 0; i + 1 < map->n; i += 2)
		if (map->items[i]->type == YN_SCALAR && strcmp(map->items[i]->value, key) == 0) {
			if (key_node)
				*key_node = map->items[i];
			return map->items[i + 1];
		}
	return NULL;
}

/* A scalar string.  Absent (or null) → *out unchanged, or an error when
 * `required`.  The previous value of *out is freed when replaced. */
static int get_str(const mctx *c, const ynode *map, const char *path, const char *key,
		   bool required, char **out, const ynode **where)
{
	char kp[MANIFEST_PATH_MAX];
	const ynode *k = NULL;
	const ynode *v = map_get(map, key, &k);
	char *dup;

	path_join(kp, sizeof(kp), path, key);
	if (where)
		*where = v ? v : map;
	if (v == NULL || ynode_is_null(v)) {
		if (!required)
			return ENVDB_OK;
		return v ? node_error(c, v, kp, "a value is required")
			 : node_error(c, map, kp, "missing required key");
	}
	if (v->type != YN_SCALAR)
		return node_error(c, v, kp, "expected a scalar, found %s", ynode_type_name(v));
	if (v->value[0] == '\0')
		return node_error(c, v, kp, "value is empty");
	dup = strdup(v->value);
	if (dup == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: out of memory", c->file);
	free(*out);
	*out = dup;
	return ENVDB_OK;
}

static int get_int(const mctx *c, const ynode *map, const char *path, const char *key,
		   bool required, int64_t min, int64_t max, int64_t *out)
{
	char kp[MANIFEST_PATH_MAX];
	const ynode *v = map_get(map, key, NULL);
	char *end;
	long long val;

	path_join(kp, sizeof(kp), path, key);
	if (v == NULL || ynode_is_null(v)) {
		if (!required)
			return ENVDB_OK;
		return v ? node_error(c, v, kp, "a value is required")
			 : node_error(c, map, kp, "missing required key");
	}
	if (v->type != YN_SCALAR || !v->plain)
		return node_error(c, v, kp, "expected an integer, found %s",
				  v->type == YN_SCALAR ? "a quoted string" : ynode_type_name(v));
	errno = 0;
	val = strtoll(v->value, &end, 10);
	if (errno != 0 || end == v->value || *end != '\0')
		return node_error(c, v, kp, "'%s' is not an integer", v->value);
	if (val < min || val > max) {
		if (max == INT64_MAX)
			return node_error(c, v, kp, "%lld is out of range (at least %lld)", val,
					  (long long)min);
		return node_error(c, v, kp, "%lld is out of range (%lld to %lld)", val,
				  (long long)min, (long long)max);
	}
	*out = val;
	return ENVDB_OK;
}

/* A duration key (…_seconds): plain seconds or the one duration grammar
 * (core/duration.h: 90s, 15m, 1h30m, 7d), at least `min`. */
static int get_seconds(const mctx *c, const ynode *map, const char *path, const char *key,
		       int64_t min, int64_t *out)
{
	char kp[MANIFEST_PATH_MAX];
	const ynode *v = map_get(map, key, NULL);
	int64_t val;

	path_join(kp, sizeof(kp), path, key);
	if (v == NULL || ynode_is_null(v))
		return ENVDB_OK;
	if (v->type != YN_SCALAR || !v->plain)
		return node_error(c, v, kp, "expected a duration, found %s",
				  v->type == YN_SCALAR ? "a quoted string" : ynode_type_name(v));
	if (envdbi_duration_parse(&val, v->value) != 0)
		return node_error(c, v, kp, "'%s': not a duration (examples: %s)", v->value,
				  ENVDBI_DURATION_EXAMPLES);
	if (val < min)
		return node_error(c, v, kp, "%lld is out of range (at least %lld)", (long long)val,
				  (long long)min);
	if (val > ENVDBI_DURATION_MAX_S) /* added to now: lease, grace, overlap, horizon */
		return node_error(c, v, kp, "%lld is out of range (at most 100 years)",
				  (long long)val);
	*out = val;
	return ENVDB_OK;
}

static int get_bool(const mctx *c, const ynode *map, const char *path, const char *key, bool *out)
{
	static const char *const yes[] = {"true", "True", "TRUE", NULL};
	static const char *const no[] = {"false", "False", "FALSE", NULL};
	char kp[MANIFEST_PATH_MAX];
	const ynode *v = map_get(map, key, NULL);

	path_join(kp, sizeof(kp), path, key);
	if (v == NULL)
		return ENVDB_OK;
	if (v->type == YN_SCALAR && v->plain && in_list(v->value, yes))
		*out = true;
	else if (v->type == YN_SCALAR && v->plain && in_list(v->value, no))
		*out = false;
	else
		return node_error(c, v, kp, "expected true or false, found %s%s%s",
				  v->type == YN_SCALAR ? "'" : "",
				  v->type == YN_SCALAR ? v->value : ynode_type_name(v),
				  v->type == YN_SCALAR ? "'" : "");
	return ENVDB_OK;
}

static bool word_valid(const char *s, const char *extra, size_t max)
{
	size_t i;

	if (s == NULL || s[0] == '\0' || strlen(s) > max)
		return false;
	for (i = 0; s[i]; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
		      (extra && strchr(extra, ch))))
			return false;
	}
	return true;
}

static bool env_name_valid(const char *s)
{
	size_t i;

	if (s == NULL || s[0] == '\0' || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (i = 0; s[i]; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_'))
			return false;
	}
	return true;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t ls = strlen(s), lx = strlen(suffix);
	return ls > lx && strcmp(s + ls - lx, suffix) == 0;
}

/* `p` relative to the manifest's directory, or as is when absolute. */
static int resolve_path(const mctx *c, char **out, const char *p)
{
	char *r;

	if (p[0] == '/') {
		r = strdup(p);
	} else {
		size_t n = strlen(c->m->dir) + strlen(p) + 2;
		r = malloc(n);
		if (r != NULL)
			snprintf(r, n, "%s%s%s", c->m->dir,
				 c->m->dir[strlen(c->m->dir) - 1] == '/' ? "" : "/", p);
	}
	if (r == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: out of memory", c->file);
	*out = r;
	return ENVDB_OK;
}

static int load_plugin_config(const mctx *c, envdbi_plugin_spec *spec, const ynode *cfg,
			      const char *path)
{
	char kp[MANIFEST_PATH_MAX];
	size_t i, n;
	int rc;

	rc = check_map(c, cfg, path, NULL);
	if (rc != ENVDB_OK || ynode_is_null(cfg))
		return rc;
	n = cfg->n / 2;
	spec->config = calloc(n ? n : 1, sizeof(*spec->config));
	if (spec->config == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: out of memory", c->file);
	for (i = 0; i < n; i++) {
		const ynode *k = cfg->items[2 * i], *v = cfg->items[2 * i + 1];
		envdbi_kv *kv = &spec->config[spec->n_config];

		path_join(kp, sizeof(kp), path, k->value);
		if (!word_valid(k->value, NULL, 64))
			return node_error(c, k, kp, "configuration keys are [a-z0-9_]+");
		if (v->type != YN_SCALAR)
			return node_error(c, v, kp, "expected a scalar, found %s",
					  ynode_type_name(v));
		if (ynode_is_null(v))
			return node_error(c, v, kp, "a value is required");
		if (ends_with(k->value, "_env") && !env_name_valid(v->value))
			/* The value is not echoed: a secret pasted here by mistake
			 * must not end up in an error message. */
			return node_error(c, v, kp,
					  "not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
		kv->key = strdup(k->value);
		kv->value = strdup(v->value);
		kv->line = v->line;
		kv->column = v->column;
		kv->key_line = k->line;
		kv->key_column = k->column;
		spec->n_config++;
		if (kv->key == NULL || kv->value == NULL)
			return envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: out of memory", c->file);
	}
	return ENVDB_OK;
}

static int load_plugins(const mctx *c, const ynode *seq)
{
	static const char *const keys[] = {"name",	       "kind",	 "path", "critical",
					   "call_timeout_ms", "config", NULL};
	envdbi_manifest *m = c->m;
	char path[MANIFEST_PATH_MAX], kp[MANIFEST_PATH_MAX];
	size_t i, j;
	int rc;

	if (ynode_is_null(seq))
		return ENVDB_OK;
	if (seq->type != YN_SEQ)
		return node_error(c, seq, "plugins", "expected a list, found %s",
				  ynode_type_name(seq));
	m->plugins = calloc(seq->n ? seq->n : 1, sizeof(*m->plugins));
	if (m->plugins == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: out of memory", c->file);
	for (i = 0; i < seq->n; i++) {
		const ynode *item = seq->items[i], *where = NULL;
		envdbi_plugin_spec *spec = &m->plugins[m->n_plugins++];
		char *kind = NULL;

		snprintf(path, sizeof(path), "plugins[%zu]", i);
		spec->critical = true;
		spec->line = item->line;
		spec->column = item->column;
		if (item->type != YN_MAP)
			return node_error(c, item, path, "expected a mapping, found %s",
					  ynode_type_name(item));
		if ((rc = check_map(c, item, path, keys)) != ENVDB_OK)
			return rc;
		if ((rc = get_str(c, item, path, "name", true, &spec->name, &where)) != ENVDB_OK)
			return rc;
		path_join(kp, sizeof(kp), path, "name");
		if (!word_valid(spec->name, "-", 64))
			return node_error(c, where, kp,
					  "'%s' is not a plugin name ([a-z0-9_-]+, at most 64)",
					  spec->name);
		for (j = 0; j + 1 < m->n_plugins; j++)
			if (strcmp(m->plugins[j].name, spec->name) == 0)
				return node_error(c, where, kp,
						  "plugin '%s' is already listed as plugins[%zu]",
						  spec->name, j);
		if ((rc = get_str(c, item, path, "kind", true, &kind, &where)) != ENVDB_OK)
			return rc;
		if (strcmp(kind, "adapter") == 0) {
			spec->kind = ENVDB_PLUGIN_ADAPTER;
		} else if (strcmp(kind, "encryptor") == 0) {
			spec->kind = ENVDB_PLUGIN_ENCRYPTOR;
		} else {
			path_join(kp, sizeof(kp), path, "kind");
			rc = node_error(c, where, kp,
					"'%s' is not a plugin kind (adapter, encryptor)", kind);
			free(kind);
			return rc;
		}
		free(kind);
		if ((rc = get_str(c, item, path, "path", false, &spec->path, NULL)) != ENVDB_OK)
			return rc;
		if (spec->path == NULL) {
			size_t n = strlen(spec->name) + 4;
			if ((spec->path = malloc(n)) == NULL)
				return envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: out of memory",
						    c->file);
			snprintf(spec->path, n, "%s.so", spec->name);
		}
		if ((rc = get_bool(c, item, path, "critical", &spec->critical)) != ENVDB_OK)
			return rc;
		if ((rc = get_int(c, item, path, "call_timeout_ms", false, 1, 86400000,
				  &spec->call_timeout_ms)) != ENVDB_OK)
			return rc;
		path_join(kp, sizeof(kp), path, "config");
		if ((rc = load_plugin_config(c, spec, map_get(item, "config", NULL), kp)) !=
		    ENVDB_OK)
			return rc;
	}
	return ENVDB_OK;
}

static const envdbi_plugin_spec *find_spec(const envdbi_manifest *m, const char *name)
{
	size_t i;

	for (i = 0; i < m->n_plugins; i++)
		if (strcmp(m->plugins[i].name, name) == 0)
			return &m->plugins[i];
	return NULL;
}

/* A reference to a plugin (defaults.driver, ...) must name a listed plugin
 * of the right kind; when absent it defaults to the first of that kind. */
static int check_plugin_ref(const mctx *c, const ynode *where, const char *path, char **name,
			    uint32_t kind, bool default_first)
{
	const char *kname = kind == ENVDB_PLUGIN_ADAPTER ? "adapter" : "encryptor";
	const envdbi_plugin_spec *spec;
	size_t i;

	if (*name == NULL) {
		if (!default_first)
			return ENVDB_OK;
		for (i = 0; i < c->m->n_plugins; i++)
			if (c->m->plugins[i].kind == kind) {
				*name = strdup(c->m->plugins[i].name);
				if (*name == NULL)
					return envdbi_error(ENVDB_ERR_NOMEM, NULL,
							    "%s: out of memory", c->file);
				break;
			}
		return ENVDB_OK;
	}
	spec = find_spec(c->m, *name);
	if (spec == NULL)
		return node_error(c, where, path, "no plugin named '%s' is listed under plugins",
				  *name);
	if (spec->kind != kind)
		return node_error(c, where, path, "plugin '%s' is not an %s", *name, kname);
	return ENVDB_OK;
}

/* plugin_path: a sequence of directories (relative to the manifest), searched
 * in order before the plugin directory.  A single string is one directory. */
static int load_plugin_path(const mctx *c, const ynode *v)
{
	char kp[MANIFEST_PATH_MAX];
	size_t i, n;
	int rc;

	if (v == NULL || ynode_is_null(v))
		return ENVDB_OK;
	if (v->type == YN_SCALAR) {
		n = 1;
	} else if (v->type == YN_SEQ) {
		n = v->n;
	} else {
		return node_error(c, v, "plugin_path", "expected a list of directories, found %s",
				  ynode_type_name(v));
	}
	if (n > ENVDBI_PLUGIN_PATH_MAX)
		return node_error(c, v, "plugin_path", "%zu directories, at most %d", n,
				  ENVDBI_PLUGIN_PATH_MAX);
	if ((c->m->plugin_path = calloc(n + 1, sizeof(char *))) == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: out of memory", c->file);
	for (i = 0; i < n; i++) {
		const ynode *d = v->type == YN_SEQ ? v->items[i] : v;

		snprintf(kp, sizeof(kp), "plugin_path[%zu]", i);
		if (d->type != YN_SCALAR)
			return node_error(c, d, kp, "expected a directory, found %s",
					  ynode_type_name(d));
		if (d->value[0] == '\0')
			return node_error(c, d, kp, "value is empty");
		if ((rc = resolve_path(c, &c->m->plugin_path[i], d->value)) != ENVDB_OK)
			return rc;
		c->m->n_plugin_path = i + 1;
	}
	return ENVDB_OK;
}

/* The PostgreSQL schema name: [a-z_][a-z0-9_]{0,62}. */
static bool schema_name_valid(const char *s)
{
	return s != NULL && !(s[0] >= '0' && s[0] <= '9') && word_valid(s, NULL, 63);
}

/* control_plane: a scalar (the SQLite file, as always) or a mapping naming
 * the store backend.  A connection string can carry a password, so it is
 * never taken inline: only from a file or an environment variable. */
static int load_control_plane(const mctx *c, const ynode *root)
{
	static const char *const keys[] = {"driver", "path", "conninfo_file", "conninfo_env",
					   "schema", NULL};
	static const char *const drivers[] = {"sqlite", "postgresql", NULL};
	static const char *const secrets[] = {"conninfo", "password", "passwd", "dsn", "url",
					      NULL};
	envdbi_manifest *m = c->m;
	const ynode *v = map_get(root, "control_plane", NULL), *at = NULL;
	char kp[MANIFEST_PATH_MAX], *tmp = NULL;
	int rc;

	if (v == NULL || ynode_is_null(v) || v->type == YN_SCALAR) {
		if ((rc = get_str(c, root, "", "control_plane", false, &tmp, NULL)) != ENVDB_OK)
			return rc;
		rc = resolve_path(c, &m->control_plane, tmp ? tmp : "control.db");
		free(tmp);
		if (rc == ENVDB_OK && (m->control_plane_driver = strdup("sqlite")) == NULL)
			rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: out of memory", c->file);
		return rc;
	}
	if (v->type != YN_MAP)
		return node_error(c, v, "control_plane",
				  "expected a file name or a mapping, found %s", ynode_type_name(v));
	for (size_t i = 0; i + 1 < v->n; i += 2) {
		const ynode *k = v->items[i];
		if (k->type == YN_SCALAR && in_list(k->value, secrets)) {
			path_join(kp, sizeof(kp), "control_plane", k->value);
			return node_error(c, k, kp,
					  "inline secret refused: give conninfo_file (a file readable "
					  "only by its owner) or conninfo_env (an environment "
					  "variable)");
		}
	}
	if ((rc = check_map(c, v, "control_plane", keys)) != ENVDB_OK)
		return rc;
	if ((rc = get_str(c, v, "control_plane", "driver", true, &m->control_plane_driver,
			  &at)) != ENVDB_OK)
		return rc;
	if (!in_list(m->control_plane_driver, drivers))
		return node_error(c, at, "control_plane.driver",
				  "'%s' is not a control-plane driver (sqlite, postgresql)",
				  m->control_plane_driver);
	if (strcmp(m->control_plane_driver, "sqlite") == 0) {
		static const char *const pg_only[] = {"conninfo_file", "conninfo_env", "schema",
						      NULL};
		for (size_t i = 0; pg_only[i] != NULL; i++) {
			const ynode *k = NULL;
			if (map_get(v, pg_only[i], &k) != NULL) {
				path_join(kp, sizeof(kp), "control_plane", pg_only[i]);
				return node_error(c, k, kp, "only for driver postgresql");
			}
		}
		if ((rc = get_str(c, v, "control_plane", "path", false, &tmp, NULL)) != ENVDB_OK)
			return rc;
		rc = resolve_path(c, &m->control_plane, tmp ? tmp : "control.db");
		free(tmp);
		return rc;
	}
	/* postgresql */
	{
		const ynode *k = NULL, *fv = map_get(v, "conninfo_file", NULL),
			    *ev = map_get(v, "conninfo_env", NULL);
		if (map_get(v, "path", &k) != NULL)
			return node_error(c, k, "control_plane.path",
					  "only for driver sqlite (postgresql: conninfo_file or "
					  "conninfo_env)");
		if ((fv == NULL) == (ev == NULL))
			return node_error(c, fv ? fv : ev ? ev : v, "control_plane",
					  "driver postgresql: give exactly one of conninfo_file, "
					  "conninfo_env");
	}
	if ((rc = get_str(c, v, "control_plane", "conninfo_file", false, &tmp, NULL)) != ENVDB_OK)
		return rc;
	if (tmp != NULL) {
		rc = resolve_path(c, &m->control_plane_conninfo_file, tmp);
		free(tmp);
		tmp = NULL;
		if (rc != ENVDB_OK)
			return rc;
	}
	if ((rc = get_str(c, v, "control_plane", "conninfo_env", false,
			  &m->control_plane_conninfo_env, &at)) != ENVDB_OK)
		return rc;
	if (m->control_plane_conninfo_env != NULL && !env_name_valid(m->control_plane_conninfo_env))
		/* Not echoed, as a plugin's *_env (load_config): a value that is
		 * no name may be the conninfo itself, password included. */
		return node_error(c, at, "control_plane.conninfo_env",
				  "not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
	if ((rc = get_str(c, v, "control_plane", "schema", false, &m->control_plane_schema,
			  &at)) != ENVDB_OK)
		return rc;
	if (m->control_plane_schema == NULL) {
		if ((m->control_plane_schema = strdup("envdb")) == NULL)
			return envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: out of memory", c->file);
	} else if (!schema_name_valid(m->control_plane_schema)) {
		return node_error(c, at, "control_plane.schema",
				  "'%s' is not a schema name ([a-z_][a-z0-9_]*, at most 63)",
				  m->control_plane_schema);
	}
	if (asprintf(&m->control_plane_desc, "postgresql schema %s (conninfo from %s%s)",
		     m->control_plane_schema,
		     m->control_plane_conninfo_file ? m->control_plane_conninfo_file : "$",
		     m->control_plane_conninfo_file ? "" : m->control_plane_conninfo_env) < 0) {
		m->control_plane_desc = NULL;
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: out of memory", c->file);
	}
	return ENVDB_OK;
}

static int load_tree(const mctx *c, const ynode *root)
{
	static const char *const top[] = {
	    "version",      "control_plane", "plugin_dir", "plugin_path",
	    "defaults",     "provisioning",  "credentials", "resolve",
	    "control_plane_busy_timeout_ms", "legacy",      "plugins",
	    NULL};
	static const char *const defaults_keys[] = {"driver",           "region",    "plan",
						    "storage_limit_mb", "encryptor", NULL};
	static const char *const prov_keys[] = {"lease_seconds", "delete_grace_seconds", NULL};
	static const char *const cred_keys[] = {"rotation_overlap_seconds",
						"expiry_horizon_seconds", NULL};
	static const char *const resolve_keys[] = {"cache_size", "cache_ttl_ms", NULL};
	static const char *const legacy_keys[] = {"register_shim", "encryptor", NULL};
	static const char *const plans[] = {"free", "starter", "pro", "enterprise", "custom", NULL};
	envdbi_manifest *m = c->m;
	const ynode *sec, *where = NULL, *driver_at = NULL, *enc_at = NULL, *legacy_at = NULL;
	const ynode *region_at = NULL;
	char *tmp = NULL;
	int64_t version = 0;
	int rc;

	if (root->type != YN_MAP)
		return node_error(c, root, NULL, "a manifest is a mapping, found %s",
				  ynode_type_name(root));
	if ((rc = check_map(c, root, "", top)) != ENVDB_OK)
		return rc;
	if ((rc = get_int(c, root, "", "version", true, 0, INT64_MAX, &version)) != ENVDB_OK)
		return rc;
	if (version != 1)
		return node_error(c, map_get(root, "version", NULL), "version",
				  "unsupported manifest version %lld (this envdb reads version 1)",
				  (long long)version);

	/* control_plane, plugin_dir */
	if ((rc = load_control_plane(c, root)) != ENVDB_OK)
		goto done;
	if ((rc = get_str(c, root, "", "plugin_dir", false, &tmp, NULL)) != ENVDB_OK)
		goto done;
	if (tmp != NULL && (rc = resolve_path(c, &m->plugin_dir, tmp)) != ENVDB_OK)
		goto done;
	free(tmp);
	tmp = NULL;
	if ((rc = load_plugin_path(c, map_get(root, "plugin_path", NULL))) != ENVDB_OK)
		goto done;

	/* defaults */
	sec = map_get(root, "defaults", NULL);
	if ((rc = check_map(c, sec, "defaults", defaults_keys)) != ENVDB_OK)
		goto done;
	if ((rc = get_str(c, sec, "defaults", "driver", false, &m->default_driver, &driver_at)) ||
	    (rc = get_str(c, sec, "defaults", "region", false, &m->default_region, &region_at)) ||
	    (rc = get_str(c, sec, "defaults", "plan", false, &m->default_plan, &where)) ||
	    (rc = get_int(c, sec, "defaults", "storage_limit_mb", false, 1, INT64_MAX,
			  &m->default_storage_mb)) ||
	    (rc = get_str(c, sec, "defaults", "encryptor", false, &m->default_encryptor, &enc_at)))
		goto done;
	/* a region reaches backends (Turso placement, names): a name, no path */
	if (m->default_region != NULL && !word_valid(m->default_region, "-", 64)) {
		rc = node_error(c, region_at, "defaults.region",
				"'%s' is not a region name ([a-z0-9_-]+, at most 64)",
				m->default_region);
		goto done;
	}
	if (m->default_plan != NULL && !in_list(m->default_plan, plans)) {
		rc = node_error(c, where, "defaults.plan",
				"'%s' is not a plan (free, starter, pro, enterprise, custom)",
				m->default_plan);
		goto done;
	}

	/* provisioning, credentials, resolve, busy timeout */
	sec = map_get(root, "provisioning", NULL);
	if ((rc = check_map(c, sec, "provisioning", prov_keys)) ||
	    (rc = get_seconds(c, sec, "provisioning", "lease_seconds", 1, &m->lease_seconds)) ||
	    (rc = get_seconds(c, sec, "provisioning", "delete_grace_seconds", 0,
			      &m->delete_grace_seconds)))
		goto done;
	sec = map_get(root, "credentials", NULL);
	if ((rc = check_map(c, sec, "credentials", cred_keys)) ||
	    (rc = get_seconds(c, sec, "credentials", "rotation_overlap_seconds", 0,
			      &m->rotation_overlap_seconds)) ||
	    (rc = get_seconds(c, sec, "credentials", "expiry_horizon_seconds", 0,
			      &m->expiry_horizon_seconds)))
		goto done;
	sec = map_get(root, "resolve", NULL);
	if ((rc = check_map(c, sec, "resolve", resolve_keys)) ||
	    (rc = get_int(c, sec, "resolve", "cache_size", false, 0, 100000000, &m->cache_size)) ||
	    (rc =
		 get_int(c, sec, "resolve", "cache_ttl_ms", false, 0, INT64_MAX, &m->cache_ttl_ms)))
		goto done;
	if ((rc = get_int(c, root, "", "control_plane_busy_timeout_ms", false, 0, INT32_MAX,
			  &m->busy_timeout_ms)))
		goto done;

	/* legacy */
	sec = map_get(root, "legacy", NULL);
	if ((rc = check_map(c, sec, "legacy", legacy_keys)) ||
	    (rc = get_bool(c, sec, "legacy", "register_shim", &m->legacy_shim)) ||
	    (rc = get_str(c, sec, "legacy", "encryptor", false, &m->legacy_encryptor, &legacy_at)))
		goto done;

	/* plugins, then the references to them */
	if ((rc = load_plugins(c, map_get(root, "plugins", NULL))) != ENVDB_OK)
		goto done;
	if ((rc = check_plugin_ref(c, driver_at, "defaults.driver", &m->default_driver,
				   ENVDB_PLUGIN_ADAPTER, true)) ||
	    (rc = check_plugin_ref(c, enc_at, "defaults.encryptor", &m->default_encryptor,
				   ENVDB_PLUGIN_ENCRYPTOR, true)) ||
	    (rc = check_plugin_ref(c, legacy_at, "legacy.encryptor", &m->legacy_encryptor,
				   ENVDB_PLUGIN_ENCRYPTOR, false)))
		goto done;
	if (m->default_region == NULL && (m->default_region = strdup("local")) == NULL)
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: out of memory", c->file);
	if (m->default_plan == NULL && (m->default_plan = strdup("free")) == NULL)
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "%s: out of memory", c->file);
done:
	free(tmp);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                              */
/* ------------------------------------------------------------------------ */

static int manifest_paths(envdbi_manifest *m, const char *path)
{
	char *real = realpath(path, NULL);
	char *slash;

	if (real == NULL) {
		int e = errno;
		if (e == ENOENT || e == ENOTDIR)
			return envdbi_error(ENVDB_ERR_CONFIG, "ENOENT", "manifest %s: not found",
					    path);
		return envdbi_error(ENVDB_ERR_IO, NULL, "manifest %s: cannot resolve path: %s",
				    path, strerror(e));
	}
	m->path = real;
	slash = strrchr(real, '/');
	m->dir = slash == real ? strdup("/") : strndup(real, (size_t)(slash - real));
	if (m->dir == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "manifest %s: out of memory", path);
	return ENVDB_OK;
}

int envdbi_manifest_load(envdbi_manifest **out, const char *path)
{
	envdbi_manifest *m = NULL;
	ynode *root = NULL;
	FILE *fp = NULL;
	struct stat st;
	char why[1024];
	mctx c;
	int fd, rc;

	if (out == NULL || path == NULL || path[0] == '\0')
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "manifest: no path given");
	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "manifest %s: out of memory", path);
	m->default_storage_mb = 1024;
	m->lease_seconds = 300;
	m->delete_grace_seconds = 7 * 24 * 3600;
	m->rotation_overlap_seconds = 3600;
	m->expiry_horizon_seconds = 86400;
	m->cache_size = 10000;
	m->cache_ttl_ms = 30000;
	m->busy_timeout_ms = 5000;
	m->legacy_shim = true;

	if ((rc = manifest_paths(m, path)) != ENVDB_OK)
		goto cleanup;
	/* m->path is resolved: O_NOFOLLOW keeps what is checked below the file
	 * that is read, even if the name is swapped meanwhile. */
	fd = open(m->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || (fp = fdopen(fd, "rb")) == NULL) {
		rc = envdbi_error(errno == ENOENT ? ENVDB_ERR_CONFIG : ENVDB_ERR_IO, NULL,
				  "manifest %s: cannot open: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto cleanup;
	}
	if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
		rc = envdbi_error(ENVDB_ERR_CONFIG, NULL, "manifest %s: not a regular file", path);
		goto cleanup;
	}
	/* Whoever can write the manifest or rename it chooses the plugins
	 * this process loads: refuse what another user could have changed. */
	if (!envdbi_trusted(m->path, &st, why, sizeof(why)) ||
	    !envdbi_trusted_dirs(m->dir, why, sizeof(why))) {
		rc = envdbi_error(ENVDB_ERR_CONFIG, NULL, "manifest %s: refused: %s", path, why);
		goto cleanup;
	}
	if (st.st_size > MANIFEST_MAX_BYTES) {
		rc = envdbi_error(ENVDB_ERR_CONFIG, NULL,
				  "manifest %s: too large (%lld bytes, at most %d)", path,
				  (long long)st.st_size, MANIFEST_MAX_BYTES);
		goto cleanup;
	}
	c.file = path;
	c.m = m;
	if ((rc = parse_tree(&root, fp, path)) != ENVDB_OK)
		goto cleanup;
	if ((rc = load_tree(&c, root)) != ENVDB_OK)
		goto cleanup;
	*out = m;
	m = NULL;
cleanup:
	if (fp != NULL)
		fclose(fp);
	ynode_free(root);
	envdbi_manifest_free(m);
	return rc;
}

void envdbi_manifest_free(envdbi_manifest *m)
{
	size_t i, j;

	if (m == NULL)
		return;
	for (i = 0; i < m->n_plugins; i++) {
		envdbi_plugin_spec *p = &m->plugins[i];
		for (j = 0; j < p->n_config; j++) {
			free(p->config[j].key);
			free(p->config[j].value);
		}
		free(p->config);
		free(p->name);
		free(p->path);
	}
	free(m->plugins);
	free(m->path);
	free(m->dir);
	free(m->control_plane);
	free(m->control_plane_driver);
	free(m->control_plane_conninfo_file);
	free(m->control_plane_conninfo_env);
	free(m->control_plane_schema);
	free(m->control_plane_desc);
	free(m->plugin_dir);
	for (i = 0; i < m->n_plugin_path; i++)
		free(m->plugin_path[i]);
	free(m->plugin_path);
	free(m->default_driver);
	free(m->default_region);
	free(m->default_plan);
	free(m->default_encryptor);
	free(m->legacy_encryptor);
	free(m);
}
