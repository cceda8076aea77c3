/*
 * core/cli_host.c — the envdb commands of the plugin host: init, plugins,
 * manifest check, key list|generate|rotate.  Public API only.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <envdb/adapter.h>
#include <envdb/encryptor.h>

#include "cli.h"

/* ------------------------------------------------------------------------ */
/* Names of kinds, flags and capabilities                                    */
/* ------------------------------------------------------------------------ */

typedef struct bit_name {
	uint64_t bit;
	const char *name;
} bit_name;

static const bit_name adapter_caps[] = {
    {ENVDB_ADAPTER_CAP_READ_ONLY, "read_only"},
    {ENVDB_ADAPTER_CAP_ROTATE_OVERLAP, "rotate_overlap"},
    {ENVDB_ADAPTER_CAP_REVOKE, "revoke"},
    {ENVDB_ADAPTER_CAP_EXPIRY, "expiry"},
    {ENVDB_ADAPTER_CAP_PROBE, "probe"},
    {ENVDB_ADAPTER_CAP_LIST, "list"},
    {ENVDB_ADAPTER_CAP_AUTHENTICATES, "authenticates"},
    {ENVDB_ADAPTER_CAP_DEPLOYMENT, "deployment"},
    {ENVDB_ADAPTER_CAP_SUSPEND, "suspend"},
    {0, NULL},
};

static const bit_name encryptor_caps[] = {
    {ENVDB_ENCRYPTOR_CAP_KEY_MANAGE, "key_manage"},
    {ENVDB_ENCRYPTOR_CAP_REWRAP, "rewrap"},
    {ENVDB_ENCRYPTOR_CAP_HEALTH, "health"},
    {ENVDB_ENCRYPTOR_CAP_KEY_VERSIONS, "key_versions"},
    {0, NULL},
};

static const bit_name plugin_flags[] = {
    {ENVDB_PLUGIN_THREAD_SAFE, "thread_safe"},
    {ENVDB_PLUGIN_REMOTE, "remote"},
    {0, NULL},
};

static const char *kind_name(uint32_t kind)
{
	return kind == ENVDB_PLUGIN_ADAPTER     ? "adapter"
	       : kind == ENVDB_PLUGIN_ENCRYPTOR ? "encryptor"
						: "unknown";
}

/* Names of the bits set in `bits`, as a JSON array, and as "a,b" in text
 * ("-" when none). */
static json_t *bits_json(const bit_name *names, uint64_t bits)
{
	json_t *a = json_array();

	for (; a != NULL && names->name != NULL; names++)
		if (bits & names->bit)
			json_array_append_new(a, json_string(names->name));
	return a;
}

static void bits_text(char *out, size_t cap, const bit_name *names, uint64_t bits)
{
	size_t used = 0;

	out[0] = '\0';
	for (; names->name != NULL && used < cap; names++)
		if (bits & names->bit) {
			int n =
			    snprintf(out + used, cap - used, "%s%s", used ? "," : "", names->name);
			if (n > 0)
				used += (size_t)n;
		}
	if (out[0] == '\0')
		snprintf(out, cap, "-");
}

/* ------------------------------------------------------------------------ */
/* init                                                                      */
/* ------------------------------------------------------------------------ */

/* Create directory `path` (0700) and any missing parent.  *created tells
 * whether the last component was made.  An existing directory is fine;
 * an existing non-directory is an error. */
static int make_dir(envdb_cli *cli, const char *path, bool *created)
{
	char buf[PATH_MAX];
	struct stat st;
	size_t i, len = strlen(path);

	*created = false;
	if (len == 0 || len >= sizeof(buf))
		return envdb_cli_fail_msg(cli, ENVDB_ERR_INVALID, "init: bad directory '%s'",
					  CLI_Q(path));
	memcpy(buf, path, len + 1);
	for (i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0700) == 0) {
			*created = i == len;
		} else if (errno != EEXIST) {
			return envdb_cli_fail_msg(cli, ENVDB_ERR_IO,
						  "init: cannot create directory %s: %s", buf,
						  strerror(errno));
		}
		if (i < len)
			buf[i] = '/';
	}
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
		return envdb_cli_fail_msg(cli, ENVDB_ERR_EXISTS,
					  "init: %s exists and is not a directory", path);
	return EX_OK;
}

/* Append `s` to the manifest text as a double-quoted YAML scalar. */
static void yaml_quoted(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\x%02x", (unsigned char)*s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

/* Write the manifest at `path` unless it exists (O_EXCL, 0600). */
static int write_manifest(envdb_cli *cli, const char *path, const char *plugin_dir, bool *created)
{
	FILE *f;
	int fd, rc = EX_OK;

	*created = false;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			return EX_OK;
		return envdb_cli_fail_msg(cli, ENVDB_ERR_IO, "init: cannot create %s: %s", path,
					  strerror(errno));
	}
	f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		unlink(path);
		return envdb_cli_fail_msg(cli, ENVDB_ERR_IO, "init: cannot write %s: %s", path,
					  strerror(errno));
	}
	fprintf(
	    f, "# envdb manifest, written by `envdb init`.  Check it with `envdb manifest check`.\n"
	       "# Relative paths are relative to this file's directory.\n"
	       "version: 1\n"
	       "control_plane: control.db\n");
	if (plugin_dir != NULL) {
		fprintf(f, "plugin_dir: ");
		yaml_quoted(f, plugin_dir);
		fputc('\n', f);
	}
	fprintf(f, "defaults:\n"
		   "  driver: sqlite\n"
		   "  region: local\n"
		   "  plan: free\n"
		   "  storage_limit_mb: 1024\n"
		   "  encryptor: kms\n"
		   "provisioning:\n"
		   "  lease_seconds: 300\n"
		   "  delete_grace_seconds: 604800\n"
		   "credentials:\n"
		   "  rotation_overlap_seconds: 3600\n"
		   "resolve:\n"
		   "  cache_size: 10000\n"
		   "  cache_ttl_ms: 30000\n"
		   "control_plane_busy_timeout_ms: 5000\n"
		   "legacy:\n"
		   "  register_shim: true\n"
		   "plugins:\n"
		   "  - name: sqlite\n"
		   "    kind: adapter\n"
		   "    critical: true\n"
		   "    config:\n"
		   "      base_dir: environments\n"
		   "  - name: kms\n"
		   "    kind: encryptor\n"
		   "    critical: true\n"
		   "    config:\n"
		   "      keyring_dir: keyring\n");
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		rc = envdb_cli_fail_msg(cli, ENVDB_ERR_IO, "init: cannot write %s: %s", path,
					strerror(errno));
		fclose(f);
		unlink(path);
		return rc;
	}
	if (fclose(f) != 0) {
		unlink(path);
		return envdb_cli_fail_msg(cli, ENVDB_ERR_IO, "init: cannot write %s: %s", path,
					  strerror(errno));
	}
	*created = true;
	return EX_OK;
}

typedef struct key_collect {
	json_t *keys;      /* [{id, current, created_at}] */
	char current[256]; /* id of the current key, "" when none */
	size_t n;
} key_collect;

static int collect_key(void *cb_ctx, const char *key_id, int is_current, int64_t created_at)
{
	key_collect *k = cb_ctx;

	if (key_id == NULL)
		return 0;
	k->n++;
	if (is_current)
		snprintf(k->current, sizeof(k->current), "%s", key_id);
	if (k->keys != NULL)
		json_array_append_new(k->keys, json_pack("{s:s, s:b, s:I}", "id", key_id, "current",
							 is_current != 0, "created_at",
							 (json_int_t)created_at));
	return 0;
}

static char *absolute(const char *path)
{
	char cwd[PATH_MAX], *r;
	size_t n;

	if ((r = realpath(path, NULL)) != NULL)
		return r;
	if (path[0] == '/')
		return strdup(path);
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return NULL;
	n = strlen(cwd) + strlen(path) + 2;
	if ((r = malloc(n)) != NULL)
		snprintf(r, n, "%s/%s", cwd, path);
	return r;
}

static json_t *item_json(const char *path, bool created)
{
	return json_pack("{s:s, s:b}", "path", path, "created", created);
}

static void item_text(envdb_cli *cli, const char *what, const char *path, bool created)
{
	envdb_cli_print(cli, "%-8s %-13s %s\n", created ? "created" : "exists", what, path);
}

int envdb_cli_init(envdb_cli *cli, int argc, char **argv)
{
	const char *plugin_dir_opt = NULL;
	const envdb_cli_opt opts[] = {{"plugin-dir", ENVDB_CLI_STRING, &plugin_dir_opt},
				      {NULL, 0, NULL}};
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	key_collect keys = {NULL, "", 0};
	char *dir = NULL, *plugin_dir = NULL, *key_id = NULL;
	char manifest[PATH_MAX], keyring[PATH_MAX], envs[PATH_MAX], control[PATH_MAX];
	bool dir_created, keyring_created = false, envs_created = false, manifest_created = false;
	bool cp_created, cp_file, key_created = false;
	/* `envdb --manifest FILE init` (no DIR): set up the deployment that an
	 * existing manifest describes -- the packaged system-wide one -- i.e.
	 * its control plane and a first key; the plugins make their own
	 * directories, and nothing is written next to the manifest. */
	bool existing;
	struct stat st;
	int rc, st_rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, opts, &pos, 0, 1)) != EX_OK)
		return rc;
	existing = pos.n == 0 && cli->manifest_opt != NULL;
	if (existing && plugin_dir_opt != NULL)
		return envdb_cli_usage(cli, "--plugin-dir is for a new DIR, not for --manifest FILE");
	umask(077);
	if (existing) {
		if ((dir = absolute(cli->manifest_opt)) != NULL) {
			snprintf(manifest, sizeof(manifest), "%s", dir);
			if (strrchr(dir, '/') != NULL && strrchr(dir, '/') != dir)
				*strrchr(dir, '/') = '\0';
		}
	} else if ((rc = make_dir(cli, pos.n ? pos.v[0] : ".", &dir_created)) != EX_OK) {
		return rc;
	} else {
		dir = absolute(pos.n ? pos.v[0] : ".");
	}
	if (plugin_dir_opt != NULL)
		plugin_dir = absolute(plugin_dir_opt);
	if (dir == NULL || (plugin_dir_opt != NULL && plugin_dir == NULL)) {
		rc = envdb_cli_fail_msg(cli, ENVDB_ERR_IO, "init: cannot resolve a path: %s",
					strerror(errno));
		goto done;
	}
	if (existing) {
		if (strlen(manifest) + 1 >= sizeof(manifest)) {
			rc = envdb_cli_fail_msg(cli, ENVDB_ERR_INVALID, "init: path too long: %s",
						manifest);
			goto done;
		}
	} else if ((size_t)snprintf(manifest, sizeof(manifest), "%s/envdb.yaml", dir) >=
		sizeof(manifest) ||
	    (size_t)snprintf(keyring, sizeof(keyring), "%s/keyring", dir) >= sizeof(keyring) ||
	    (size_t)snprintf(envs, sizeof(envs), "%s/environments", dir) >= sizeof(envs)) {
		rc = envdb_cli_fail_msg(cli, ENVDB_ERR_INVALID, "init: path too long: %s", dir);
		goto done;
	}
	if (!existing && ((rc = make_dir(cli, keyring, &keyring_created)) != EX_OK ||
			  (rc = make_dir(cli, envs, &envs_created)) != EX_OK ||
			  (rc = write_manifest(cli, manifest, plugin_dir, &manifest_created)) !=
			      EX_OK))
		goto done;
	if (!manifest_created && plugin_dir != NULL)
		envdb_cli_error(cli, "%s exists and was left unchanged (--plugin-dir not applied)",
				manifest);

	/* Validate first, then learn where the control plane goes. */
	if ((rc = envdb_open(&ctx, manifest, ENVDB_OPEN_CHECK_ONLY)) != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto done;
	}
	/* A file control plane: whether init creates it is whether the file
	 * appears; a server's (PostgreSQL) is described, never stat()ed. */
	cp_file = envdb_control_plane_path(ctx) != NULL;
	snprintf(control, sizeof(control), "%s", envdb_control_plane_describe(ctx));
	envdb_close(ctx);
	ctx = NULL;
	st_rc = cp_file ? stat(control, &st) : 0;
	if ((rc = envdb_open(&ctx, manifest, ENVDB_OPEN_CREATE)) != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto done;
	}
	cp_created = cp_file && st_rc != 0 && stat(control, &st) == 0;

	/* A first key, unless the keyring has one. */
	keys.keys = json_array();
	if ((rc = envdb_key_list(ctx, NULL, collect_key, &keys)) != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto done;
	}
	if (keys.n == 0) {
		if ((rc = envdb_key_generate(&key_id, ctx, NULL, 1)) != ENVDB_OK) {
			rc = envdb_cli_fail(cli, rc);
			goto done;
		}
		key_created = true;
		snprintf(keys.current, sizeof(keys.current), "%s", key_id);
	}

	if (cli->json) {
		rc = envdb_cli_json_print(
		    cli, json_pack("{s:s, s:o, s:o, s:s?, s:o, s:o, s:{s:s?, s:b}}", "dir", dir,
				   "manifest", item_json(manifest, manifest_created),
				   "control_plane", item_json(control, cp_created),
				   "deployment_id", envdb_deployment_id(ctx), "keyring",
				   existing ? json_null() : item_json(keyring, keyring_created),
				   "environments",
				   existing ? json_null() : item_json(envs, envs_created), "key",
				   "id", keys.current[0] ? keys.current : NULL, "created",
				   key_created));
		goto done;
	}
	item_text(cli, "manifest", manifest, manifest_created);
	item_text(cli, "control plane", control, cp_created);
	item_text(cli, "deployment", envdb_deployment_id(ctx), cp_created);
	if (!existing) {
		item_text(cli, "keyring", keyring, keyring_created);
		item_text(cli, "environments", envs, envs_created);
	}
	envdb_cli_print(cli, "%-8s %-13s %s\n", key_created ? "created" : "exists", "key",
			keys.current[0] ? keys.current : "(no current key)");
	rc = EX_OK;
done:
	json_decref(keys.keys);
	envdb_free(key_id);
	envdb_close(ctx);
	free(dir);
	free(plugin_dir);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* plugins                                                                   */
/* ------------------------------------------------------------------------ */

static const bit_name *caps_table(uint32_t kind)
{
	return kind == ENVDB_PLUGIN_ADAPTER ? adapter_caps : encryptor_caps;
}

static json_t *plugin_json(const envdb_plugin_info *pi)
{
	char abi[32];

	snprintf(abi, sizeof(abi), "%u.%u", pi->abi_major, pi->abi_minor);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:s}", "name", pi->name, "kind",
			 kind_name(pi->kind), "version", pi->version, "description",
			 pi->description, "abi", abi, "capabilities",
			 bits_json(caps_table(pi->kind), pi->capabilities), "flags",
			 bits_json(plugin_flags, pi->flags), "path", pi->path);
}

int envdb_cli_plugins(envdb_cli *cli, int argc, char **argv)
{
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	size_t i, n, w_name = 4, w_ver = 7, w_caps = 12;
	char caps[256];
	json_t *list = NULL;
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, NULL, &pos, 0, 0)) != EX_OK)
		return rc;
	if ((rc = envdb_cli_open(cli, &ctx, ENVDB_OPEN_NO_STORE)) != EX_OK)
		return rc;
	n = envdb_plugin_count(ctx);
	list = json_array();
	for (i = 0; i < n; i++) {
		envdb_plugin_info pi = {.struct_size = sizeof(pi)};
		if ((rc = envdb_plugin_get(&pi, ctx, i)) != ENVDB_OK) {
			rc = envdb_cli_fail(cli, rc);
			goto done;
		}
		json_array_append_new(list, plugin_json(&pi));
		bits_text(caps, sizeof(caps), caps_table(pi.kind), pi.capabilities);
		if (strlen(pi.name) > w_name)
			w_name = strlen(pi.name);
		if (strlen(pi.version) > w_ver)
			w_ver = strlen(pi.version);
		if (strlen(caps) > w_caps)
			w_caps = strlen(caps);
	}
	if (cli->json) {
		rc = envdb_cli_json_print(cli, json_pack("{s:s, s:s, s:O}", "manifest",
							 envdb_manifest_path(ctx), "plugin_dir",
							 envdb_plugin_dir(ctx), "plugins", list));
		goto done;
	}
	printf("%-*s  %-9s  %-*s  %-4s  %-*s  %s\n", (int)w_name, "NAME", "KIND", (int)w_ver,
	       "VERSION", "ABI", (int)w_caps, "CAPABILITIES", "PATH");
	for (i = 0; i < n; i++) {
		envdb_plugin_info pi = {.struct_size = sizeof(pi)};
		char abi[32];
		envdb_plugin_get(&pi, ctx, i);
		bits_text(caps, sizeof(caps), caps_table(pi.kind), pi.capabilities);
		snprintf(abi, sizeof(abi), "%u.%u", pi.abi_major, pi.abi_minor);
		printf("%-*s  %-9s  %-*s  %-4s  %-*s  %s\n", (int)w_name, pi.name,
		       kind_name(pi.kind), (int)w_ver, pi.version[0] ? pi.version : "-", abi,
		       (int)w_caps, caps, pi.path);
	}
	rc = EX_OK;
done:
	json_decref(list);
	envdb_close(ctx);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* manifest check                                                            */
/* ------------------------------------------------------------------------ */

int envdb_cli_manifest_check(envdb_cli *cli, int argc, char **argv)
{
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	const char *path = NULL;
	json_t *names;
	size_t i, n;
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, NULL, &pos, 0, 1)) != EX_OK)
		return rc;
	if (pos.n == 1)
		path = pos.v[0];
	else if ((rc = envdb_cli_manifest(cli, &path)) != EX_OK)
		return rc;
	rc = envdb_open(&ctx, path, ENVDB_OPEN_CHECK_ONLY);
	if (rc != ENVDB_OK) {
		const envdb_error *e = envdb_error_last();
		int code = envdb_cli_exit_status(rc);
		fprintf(stderr, "envdb: %s\n", e->message[0] ? e->message : envdb_status_str(rc));
		if (cli->json)
			envdb_cli_json_print(
			    cli, json_pack("{s:s, s:b, s:{s:s, s:i, s:i, s:s}}", "manifest", path,
					   "valid", 0, "error", "status", envdb_status_str(rc),
					   "code", rc, "exit", code, "message", e->message));
		return code;
	}
	n = envdb_plugin_count(ctx);
	names = json_array();
	for (i = 0; i < n; i++) {
		envdb_plugin_info pi = {.struct_size = sizeof(pi)};
		if (envdb_plugin_get(&pi, ctx, i) == ENVDB_OK)
			json_array_append_new(names,
					      json_pack("{s:s, s:s, s:s}", "name", pi.name, "kind",
							kind_name(pi.kind), "path", pi.path));
	}
	if (cli->json) {
		rc = envdb_cli_json_print(cli, json_pack("{s:s, s:b, s:o}", "manifest",
							 envdb_manifest_path(ctx), "valid", 1,
							 "plugins", names));
	} else {
		printf("%s: ok (%zu plugin%s:", envdb_manifest_path(ctx), n, n == 1 ? "" : "s");
		for (i = 0; i < n; i++)
			printf(" %s", json_string_value(
					  json_object_get(json_array_get(names, i), "name")));
		printf(")\n");
		json_decref(names);
		rc = EX_OK;
	}
	envdb_close(ctx);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* key list | generate | rotate                                              */
/* ------------------------------------------------------------------------ */

int envdb_cli_key_list(envdb_cli *cli, int argc, char **argv)
{
	const char *encryptor = NULL;
	const envdb_cli_opt opts[] = {{"encryptor", ENVDB_CLI_STRING, &encryptor}, {NULL, 0, NULL}};
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	key_collect keys = {NULL, "", 0};
	size_t i;
	int rc;

	if ((rc = envdb_cli_parse(cli, argc, argv, opts, &pos, 0, 0)) != EX_OK)
		return rc;
	if ((rc = envdb_cli_open(cli, &ctx, ENVDB_OPEN_NO_STORE)) != EX_OK)
		return rc;
	keys.keys = json_array();
	if ((rc = envdb_key_list(ctx, encryptor, collect_key, &keys)) != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto done;
	}
	if (cli->json) {
		rc = envdb_cli_json_print(
		    cli, json_pack("{s:s*, s:s?, s:O}", "encryptor", encryptor, "current",
				   keys.current[0] ? keys.current : NULL, "keys", keys.keys));
		goto done;
	}
	for (i = 0; i < json_array_size(keys.keys); i++) {
		json_t *k = json_array_get(keys.keys, i);
		printf("%s%s\n", json_string_value(json_object_get(k, "id")),
		       json_is_true(json_object_get(k, "current")) ? "  (current)" : "");
	}
	rc = EX_OK;
done:
	json_decref(keys.keys);
	envdb_close(ctx);
	return rc;
}

static int key_create(envdb_cli *cli, int argc, char **argv, bool rotate)
{
	const char *encryptor = NULL;
	bool current = false;
	const envdb_cli_opt gen_opts[] = {{"encryptor", ENVDB_CLI_STRING, &encryptor},
					  {"current", ENVDB_CLI_FLAG, &current},
					  {NULL, 0, NULL}};
	const envdb_cli_opt rot_opts[] = {{"encryptor", ENVDB_CLI_STRING, &encryptor},
					  {NULL, 0, NULL}};
	envdb_cli_args pos;
	envdb_ctx *ctx = NULL;
	char *key_id = NULL;
	int rc;

	/* rotate takes no --current: it always makes the key current. */
	if ((rc = envdb_cli_parse(cli, argc, argv, rotate ? rot_opts : gen_opts, &pos, 0, 0)) !=
	    EX_OK)
		return rc;
	if ((rc = envdb_cli_open(cli, &ctx, ENVDB_OPEN_NO_STORE)) != EX_OK)
		return rc;
	if ((rc = envdb_key_generate(&key_id, ctx, encryptor, rotate || current)) != ENVDB_OK) {
		rc = envdb_cli_fail(cli, rc);
		goto done;
	}
	if (cli->json)
		rc = envdb_cli_json_print(
		    cli, json_pack("{s:s, s:b}", "id", key_id, "current", rotate || current));
	else
		printf("%s%s\n", key_id, rotate || current ? "  (current)" : "");
	if (rotate)
		envdb_cli_error(cli,
				"key %s is now current; run `envdb key rewrap` to re-encrypt "
				"existing credentials under it",
				key_id);
done:
	envdb_free(key_id);
	envdb_close(ctx);
	return rc;
}

int envdb_cli_key_generate(envdb_cli *cli, int argc, char **argv)
{
	return key_create(cli, argc, argv, false);
}

int envdb_cli_key_rotate(envdb_cli *cli, int argc, char **argv)
{
	return key_create(cli, argc, argv, true);
}
