/*
 * core/loader.c — find, open, validate and initialise the plugins a
 * manifest lists; unload them.  The only file of envdb that includes
 * <ltdl.h>.
 *
 * The rules (PulseAudio/collectd/p11-kit practice):
 *  - a relative plugin path resolves against the first directory of the
 *    manifest's plugin_path that holds it, else against the plugin
 *    directory (the manifest's plugin_dir, else $ENVDB_PLUGIN_DIR, else the
 *    compiled-in ENVDB_PLUGIN_DIR), never against the current directory;
 *    every directory consulted is checked as the plugin's own is; ltdl
 *    always receives an absolute path, so its search path is never
 *    consulted;
 *  - modules are opened with local symbol scope;
 *  - the entry is looked up plain and as `<module>_LTX_<entry>`, because
 *    distributions delete .la files;
 *  - lt_dlerror() is never trusted alone: every message says which step
 *    failed, and "cannot open" is diagnosed from the file itself;
 *  - every ltdl call happens under one mutex, and lt_dlinit/lt_dlexit are
 *    reference counted;
 *  - the descriptor is validated field by field before anything in it is
 *    called; a `critical` plugin that fails aborts loading (everything
 *    loaded so far is unloaded), another one is skipped with a warning.
 *
 * Every message names the plugin and its path: "plugin NAME (PATH): cause".
 * Configuration problems also name the manifest position and key path:
 * "MANIFEST:LINE:COL: plugins[I].config.KEY: cause (plugin NAME (PATH))".
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ltdl.h>

#include "internal.h"
#include "plugin_priv.h"

#ifndef ENVDB_PLUGIN_DIR
#define ENVDB_PLUGIN_DIR "/usr/local/lib/envdb/plugins-1"
#endif

#define SECRET_FILE_MAX (64 * 1024)
#define CONFIG_KEYS_MAX 256
#define URL_SCHEMES_MAX 16
#define URL_SCHEME_LEN_MAX 32

/* Sizes of the ABI 1.0 structs: the least a plugin of this major gives. */
/* Every capability bit this host knows (ABI 1.1). */
#define ADAPTER_CAPS_KNOWN ((uint64_t)ENVDB_ADAPTER_CAP_DEPLOYMENT * 2 - 1)
#define ENCRYPTOR_CAPS_KNOWN ((uint64_t)ENVDB_ENCRYPTOR_CAP_KEY_VERSIONS * 2 - 1)
#define DESC_V1_0_SIZE (offsetof(envdb_plugin_descriptor, ops) + sizeof(const void *))
#define ADAPTER_OPS_V1_0_SIZE (offsetof(envdb_adapter_ops, list) + sizeof(envdb_adapter_list_fn))
#define ENCRYPTOR_OPS_V1_0_SIZE \
	(offsetof(envdb_encryptor_ops, key_generate) + sizeof(envdb_encryptor_key_generate_fn))
#define CONFIG_KEY_V1_0_SIZE (offsetof(envdb_config_key, flags) + sizeof(uint32_t))

/* An adapter installed in the plugin directory, as its descriptor says
 * (url_schemes lookup; not loaded, not initialised). */
typedef struct installed_adapter {
	char *name;
	char **schemes;
	size_t n_schemes;
} installed_adapter;

struct envdbi_plugins {
	envdbi_plugin **v;
	size_t n;
	char *dir; /* the plugin directory of the manifest; owned */
	char **search; /* its plugin_path, then dir (not owned: aliases); owned array */
	size_t n_search;
	/* the installed adapters, read on first need */
	bool scanned;
	installed_adapter *installed;
	size_t n_installed;
};

/* ------------------------------------------------------------------------ */
/* ltdl, serialized and reference counted                                    */
/* ------------------------------------------------------------------------ */

static pthread_mutex_t ltdl_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned ltdl_users;

static const char *ltdl_message(void)
{
	const char *e = lt_dlerror();
	return e ? e : "no detail from libltdl";
}

/* With ltdl_lock held. */
static int ltdl_acquire(void)
{
	if (ltdl_users == 0 && lt_dlinit() != 0)
		return envdbi_error(ENVDB_ERR_GENERIC, NULL, "libltdl: lt_dlinit failed: %s",
				    ltdl_message());
	ltdl_users++;
	return ENVDB_OK;
}

/* With ltdl_lock held. */
static void ltdl_release(void)
{
	if (ltdl_users > 0 && --ltdl_users == 0)
		lt_dlexit();
}

/* ------------------------------------------------------------------------ */
/* Paths                                                                     */
/* ------------------------------------------------------------------------ */

const char *envdbi_plugin_dir(const envdbi_manifest *m)
{
	const char *env;

	if (m != NULL && m->plugin_dir != NULL)
		return m->plugin_dir;
	env = getenv("ENVDB_PLUGIN_DIR");
	if (env != NULL && env[0] != '\0')
		return env;
	return ENVDB_PLUGIN_DIR;
}

/* An absolute path without empty, "." or ".." components and without a
 * trailing '/' (realpath() returns such a path unchanged when no component
 * is a symbolic link). */
static bool path_is_normal(const char *p)
{
	const char *c = p;

	if (p[0] != '/' || p[1] == '\0')
		return false;
	while (*c == '/') {
		const char *end = strchr(c + 1, '/');
		size_t n = end ? (size_t)(end - c - 1) : strlen(c + 1);

		if (n == 0 || (n == 1 && c[1] == '.') || (n == 2 && c[1] == '.' && c[2] == '.'))
			return false;
		if (end == NULL)
			return true;
		c = end;
	}
	return false;
}

static char *path_join(const char *dir, const char *file)
{
	size_t n = strlen(dir) + strlen(file) + 2;
	char *r = malloc(n);

	if (r != NULL)
		snprintf(r, n, "%s%s%s", dir, (dir[0] && dir[strlen(dir) - 1] == '/') ? "" : "/",
			 file);
	return r;
}

/* The libtool module name of a file: its base name up to the last '.',
 * with every character that is not alphanumeric replaced by '_'. */
static void module_name(char *out, size_t cap, const char *path)
{
	const char *base = strrchr(path, '/');
	const char *ext;
	size_t i, n;

	base = base ? base + 1 : path;
	ext = strrchr(base, '.');
	n = ext && ext != base ? (size_t)(ext - base) : strlen(base);
	if (n >= cap)
		n = cap - 1;
	for (i = 0; i < n; i++)
		out[i] = isalnum((unsigned char)base[i]) ? base[i] : '_';
	out[n] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Opening                                                                   */
/* ------------------------------------------------------------------------ */

/* Why a file ltdl refused could not be opened, from the file itself.
 * With ltdl_lock held. */
static int diagnose_open(const envdbi_plugin *p, const char *load_path, const char *lt_msg)
{
	unsigned char magic[4] = {0};
	const char *why;
	ssize_t got = pread(p->fd, magic, sizeof(magic), 0);
	void *h;

	if (got >= 0 && (got < 4 || memcmp(magic, "\177ELF", 4) != 0))
		return envdbi_error(ENVDB_ERR_ABI, NULL,
				    "plugin %s (%s): not a shared object (no ELF header)", p->name,
				    p->path);
	/* ltdl tries other file names after the real failure and reports the
	 * last one ("file not found"): ask the dynamic linker itself why this
	 * file does not load (missing dependency, wrong architecture, ...). */
	dlerror();
	h = dlopen(load_path, RTLD_LAZY | RTLD_LOCAL);
	if (h != NULL) {
		dlclose(h);
	} else if ((why = dlerror()) != NULL) {
		const char *colon = strstr(why, ": ");
		/* dlerror() starts with the path, which the message has already */
		if (colon != NULL && strncmp(why, load_path, strlen(load_path)) == 0)
			why = colon + 2;
		return envdbi_error(ENVDB_ERR_ABI, NULL,
				    "plugin %s (%s): cannot load the shared object: %s", p->name,
				    p->path, why);
	}
	return envdbi_error(ENVDB_ERR_ABI, NULL,
			    "plugin %s (%s): cannot load the shared object: %s", p->name, p->path,
			    lt_msg);
}

typedef union {
	void *ptr;
	envdb_plugin_entry_fn fn;
} entry_ptr;

/* Load the module at load_path (the checked file, see open_checked) and
 * find its entry.  With ltdl_lock held. */
static int open_module(envdbi_plugin *p, const char *load_path, envdb_plugin_entry_fn *entry)
{
	lt_dladvise advise = NULL;
	lt_dlhandle h = NULL;
	char mod[128], sym[256];
	entry_ptr e = {NULL};
	int rc, v;

	if ((rc = ltdl_acquire()) != ENVDB_OK)
		return envdbi_error_prefix("plugin %s (%s): ", p->name, p->path);
	/* No lt_dladvise_ext: the file is already open, no other name is tried. */
	if (lt_dladvise_init(&advise) != 0 || lt_dladvise_local(&advise) != 0) {
		rc = envdbi_error(ENVDB_ERR_GENERIC, NULL,
				  "plugin %s (%s): cannot prepare the load options: %s", p->name,
				  p->path, ltdl_message());
		goto fail;
	}
	lt_dlerror(); /* clear a stale message */
	h = lt_dlopenadvise(load_path, advise);
	if (h == NULL) {
		rc = diagnose_open(p, load_path, ltdl_message());
		goto fail;
	}

	e.ptr = lt_dlsym(h, ENVDB_PLUGIN_ENTRY_SYMBOL);
	if (e.ptr == NULL) {
		module_name(mod, sizeof(mod), p->path);
		snprintf(sym, sizeof(sym), "%s_LTX_%s", mod, ENVDB_PLUGIN_ENTRY_SYMBOL);
		e.ptr = lt_dlsym(h, sym);
	}
	if (e.ptr == NULL) {
		/* Say so when the module speaks another major of the ABI. */
		for (v = 0; v <= 9; v++) {
			char other[64];
			if (v == ENVDB_ABI_MAJOR)
				continue;
			snprintf(other, sizeof(other), "envdb_plugin_entry_v%d", v);
			if (lt_dlsym(h, other) != NULL) {
				rc = envdbi_error(ENVDB_ERR_ABI, NULL,
						  "plugin %s (%s): exports %s but not %s: it was "
						  "built for plugin ABI %d, this host loads ABI %d",
						  p->name, p->path, other,
						  ENVDB_PLUGIN_ENTRY_SYMBOL, v, ENVDB_ABI_MAJOR);
				goto fail;
			}
		}
		rc = envdbi_error(ENVDB_ERR_ABI, NULL,
				  "plugin %s (%s): no entry symbol: neither %s nor %s is exported",
				  p->name, p->path, ENVDB_PLUGIN_ENTRY_SYMBOL, sym);
		goto fail;
	}
	lt_dladvise_destroy(&advise);
	p->handle = h;
	*entry = e.fn;
	return ENVDB_OK;
fail:
	if (advise != NULL)
		lt_dladvise_destroy(&advise);
	if (h != NULL)
		lt_dlclose(h);
	ltdl_release();
	return rc;
}

static void close_module(envdbi_plugin *p)
{
	if (p->handle == NULL)
		return;
	pthread_mutex_lock(&ltdl_lock);
	lt_dlclose((lt_dlhandle)p->handle);
	p->handle = NULL;
	ltdl_release();
	pthread_mutex_unlock(&ltdl_lock);
}

/* Open p->path to load it, refusing what someone other than root or the
 * current user could have written or replaced (core/trust.c): every
 * directory from / to the plugin's, then the file itself, opened without
 * following a symbolic link and checked through its descriptor.  The
 * module is then loaded from that descriptor ("/proc/self/fd/N"), so the
 * inode checked is the inode loaded.  p->fd stays open while the module is
 * loaded: libltdl shares a handle between two loads of one file name, and
 * a reused descriptor number must not name another plugin's module.
 * Without /proc, the resolved path is loaded after a last check that it
 * still names the checked inode: a residual gap that only someone able to
 * write the (checked) directories could use. */
static int open_checked(envdbi_plugin *p, char *load_path, size_t cap, char **memo)
{
	char why[1024], *dir = NULL, *real = NULL, *file = NULL, *slash;
	struct stat st, again;
	bool checked;
	int rc = ENVDB_OK, e;

	if ((dir = strdup(p->path)) == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "plugin %s: out of memory", p->name);
	slash = strrchr(dir, '/'); /* p->path is absolute */
	*slash = '\0';
	/* A normal path whose every component is a trusted directory (no
	 * symbolic link: envdbi_trusted_dirs refuses them) is its own real
	 * path: realpath() would only repeat the walk with a readlink() per
	 * component.  Anything else is resolved first, then checked. */
	/* *memo: the directory the previous plugin of this load was found
	 * trusted in (the plugins of a manifest usually share one), not
	 * walked again. */
	checked = dir[0] != '\0' && path_is_normal(dir) &&
		  ((*memo != NULL && strcmp(*memo, dir) == 0) ||
		   envdbi_trusted_dirs(dir, why, sizeof(why)));
	if (checked) {
		real = dir; /* slash + 1 still points into it */
		dir = NULL;
	} else if ((real = realpath(dir[0] ? dir : "/", NULL)) == NULL) {
		e = errno;
		goto missing;
	}
	if (!checked && !envdbi_trusted_dirs(real, why, sizeof(why))) {
		rc = envdbi_error(ENVDB_ERR_CONFIG, NULL, "plugin %s (%s): refused: %s", p->name,
				  p->path, why);
		goto done;
	}
	if (*memo == NULL || strcmp(*memo, real) != 0) {
		free(*memo);
		*memo = strdup(real); /* NULL (out of memory): no memo */
	}
	if ((file = path_join(real, slash + 1)) == NULL) {
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "plugin %s: out of memory", p->name);
		goto done;
	}
	p->fd = open(file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (p->fd < 0) {
		e = errno;
		if (e == ELOOP) {
			rc = envdbi_error(ENVDB_ERR_CONFIG, NULL,
					  "plugin %s (%s): refused: %s is a symbolic link; name "
					  "the shared object itself",
					  p->name, p->path, file);
			goto done;
		}
		goto missing;
	}
	if (fstat(p->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		rc = envdbi_error(ENVDB_ERR_CONFIG, NULL, "plugin %s (%s): not a regular file",
				  p->name, p->path);
		goto done;
	}
	if (!envdbi_trusted(file, &st, why, sizeof(why))) {
		rc = envdbi_error(ENVDB_ERR_CONFIG, NULL, "plugin %s (%s): refused: %s", p->name,
				  p->path, why);
		goto done;
	}
	snprintf(load_path, cap, "/proc/self/fd/%d", p->fd);
	if (stat(load_path, &again) == 0 && again.st_dev == st.st_dev &&
	    again.st_ino == st.st_ino)
		goto done;
	snprintf(load_path, cap, "%s", file);
	if (stat(file, &again) != 0 || again.st_dev != st.st_dev || again.st_ino != st.st_ino)
		rc = envdbi_error(ENVDB_ERR_CONFIG, NULL,
				  "plugin %s (%s): refused: %s was replaced while it was checked",
				  p->name, p->path, file);
	goto done;
missing:
	rc = envdbi_error(e == ENOENT || e == ENOTDIR ? ENVDB_ERR_CONFIG : ENVDB_ERR_IO, NULL,
			  "plugin %s (%s): %s", p->name, p->path,
			  e == ENOENT || e == ENOTDIR ? "no such file (is the plugin installed? "
						      "check plugin_path, plugin_dir / ENVDB_PLUGIN_DIR)"
						    : strerror(e));
done:
	free(dir);
	free(real);
	free(file);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Descriptor validation                                                     */
/* ------------------------------------------------------------------------ */

static const char *kind_name(uint32_t kind)
{
	return kind == ENVDB_PLUGIN_ADAPTER     ? "adapter"
	       : kind == ENVDB_PLUGIN_ENCRYPTOR ? "encryptor"
						: "unknown";
}

static bool name_valid(const char *s)
{
	size_t i;

	if (s[0] == '\0')
		return false;
	for (i = 0; s[i]; i++) {
		if (i >= 64)
			return false;
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		      s[i] == '-'))
			return false;
	}
	return true;
}

static bool key_name_valid(const char *s)
{
	size_t i;

	if (s == NULL || s[0] == '\0')
		return false;
	for (i = 0; s[i]; i++)
		if (i >= 64 ||
		    !((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

static int bad(const envdbi_plugin *p, int status, const char *fmt, ...) ENVDB_PRINTF(3, 4);

/* Report a validation failure of plugin p: "plugin NAME (PATH): cause". */
static int bad(const envdbi_plugin *p, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return envdbi_error(status, NULL, "plugin %s (%s): %s", p->name, p->path, msg);
}

#define BAD(status, ...) bad(p, status, __VA_ARGS__)

/* One capability bit against one slot.  *who names the slot. */
static int check_cap(const envdbi_plugin *p, uint64_t caps, uint64_t bit, const char *cap,
		     bool has_slot, const char *slot)
{
	if ((caps & bit) && !has_slot)
		return BAD(ENVDB_ERR_ABI, "claims the %s capability but its %s operation is NULL",
			   cap, slot);
	if (!(caps & bit) && has_slot)
		return BAD(ENVDB_ERR_ABI, "has a %s operation but does not claim the %s capability",
			   slot, cap);
	return ENVDB_OK;
}

static int validate_ops(envdbi_plugin *p)
{
	const void *ops = p->desc.ops;
	size_t size, min, have;

	if (ops == NULL)
		return BAD(ENVDB_ERR_ABI, "descriptor has no operations (ops is NULL)");
	size = *(const size_t *)ops;
	if (p->kind == ENVDB_PLUGIN_ADAPTER) {
		const envdb_adapter_ops *a = &p->ops.adapter;
		min = ADAPTER_OPS_V1_0_SIZE;
		have = sizeof(envdb_adapter_ops);
		if (size < min || size > 65536)
			return BAD(ENVDB_ERR_ABI,
				   "adapter operations are %zu bytes; plugin ABI 1.0 needs %zu",
				   size, min);
		memcpy(&p->ops.adapter, ops, size < have ? size : have);
		if (a->database_name == NULL)
			return BAD(ENVDB_ERR_ABI,
				   "required adapter operation database_name is NULL");
		if (a->create == NULL)
			return BAD(ENVDB_ERR_ABI, "required adapter operation create is NULL");
		if (a->drop == NULL)
			return BAD(ENVDB_ERR_ABI, "required adapter operation drop is NULL");
		if (a->mint == NULL)
			return BAD(ENVDB_ERR_ABI, "required adapter operation mint is NULL");
		p->caps = a->capabilities;
		if (p->caps & ~ADAPTER_CAPS_KNOWN)
			return BAD(ENVDB_ERR_ABI, "claims unknown adapter capability bits 0x%llx",
				   (unsigned long long)(p->caps & ~ADAPTER_CAPS_KNOWN));
		if (check_cap(p, p->caps, ENVDB_ADAPTER_CAP_REVOKE, "revoke", a->revoke != NULL,
			      "revoke") ||
		    check_cap(p, p->caps, ENVDB_ADAPTER_CAP_PROBE, "probe", a->probe != NULL,
			      "probe") ||
		    check_cap(p, p->caps, ENVDB_ADAPTER_CAP_LIST, "list", a->list != NULL, "list") ||
		    check_cap(p, p->caps, ENVDB_ADAPTER_CAP_SUSPEND, "suspend", a->suspend != NULL,
			      "suspend") ||
		    check_cap(p, p->caps, ENVDB_ADAPTER_CAP_SUSPEND, "suspend", a->resume != NULL,
			      "resume"))
			return envdb_error_last()->status;
	} else {
		const envdb_encryptor_ops *e = &p->ops.encryptor;
		min = ENCRYPTOR_OPS_V1_0_SIZE;
		have = sizeof(envdb_encryptor_ops);
		if (size < min || size > 65536)
			return BAD(ENVDB_ERR_ABI,
				   "encryptor operations are %zu bytes; plugin ABI 1.0 needs %zu",
				   size, min);
		memcpy(&p->ops.encryptor, ops, size < have ? size : have);
		if (e->current_key == NULL)
			return BAD(ENVDB_ERR_ABI,
				   "required encryptor operation current_key is NULL");
		if (e->encrypt == NULL)
			return BAD(ENVDB_ERR_ABI, "required encryptor operation encrypt is NULL");
		if (e->decrypt == NULL)
			return BAD(ENVDB_ERR_ABI, "required encryptor operation decrypt is NULL");
		if (e->key_of == NULL)
			return BAD(ENVDB_ERR_ABI, "required encryptor operation key_of is NULL");
		p->caps = e->capabilities;
		if (p->caps & ~ENCRYPTOR_CAPS_KNOWN)
			return BAD(ENVDB_ERR_ABI, "claims unknown encryptor capability bits 0x%llx",
				   (unsigned long long)(p->caps & ~ENCRYPTOR_CAPS_KNOWN));
		if (check_cap(p, p->caps, ENVDB_ENCRYPTOR_CAP_REWRAP, "rewrap", e->rewrap != NULL,
			      "rewrap") ||
		    check_cap(p, p->caps, ENVDB_ENCRYPTOR_CAP_KEY_MANAGE, "key_manage",
			      e->key_list != NULL, "key_list") ||
		    check_cap(p, p->caps, ENVDB_ENCRYPTOR_CAP_KEY_MANAGE, "key_manage",
			      e->key_generate != NULL, "key_generate") ||
		    check_cap(p, p->caps, ENVDB_ENCRYPTOR_CAP_HEALTH, "health", e->health != NULL,
			      "health") ||
		    check_cap(p, p->caps, ENVDB_ENCRYPTOR_CAP_KEY_VERSIONS, "key_versions",
			      e->is_current != NULL, "is_current"))
			return envdb_error_last()->status;
	}
	return ENVDB_OK;
}

/* The i-th declared configuration key.  The array's stride is the size of
 * its elements as the plugin knows them (the struct may have grown), which
 * validate_config_keys() checked; NULL past the terminator. */
static const envdb_config_key *config_key_at(const envdbi_plugin *p, size_t i)
{
	const envdb_config_key *first = p->desc.config_keys;
	const envdb_config_key *k;

	if (first == NULL)
		return NULL;
	k = (const envdb_config_key *)(const void *)((const char *)first + i * first->struct_size);
	return k->name != NULL ? k : NULL;
}

static int validate_config_keys(const envdbi_plugin *p)
{
	const envdb_config_key *first = p->desc.config_keys, *k, *o;
	size_t i, j;

	if (first == NULL || first->name == NULL)
		return ENVDB_OK;
	if (first->struct_size < CONFIG_KEY_V1_0_SIZE || first->struct_size > 4096 ||
	    first->struct_size % sizeof(void *) != 0)
		return BAD(ENVDB_ERR_ABI,
			   "configuration keys are %zu bytes each; plugin ABI 1.0 needs %zu",
			   first->struct_size, (size_t)CONFIG_KEY_V1_0_SIZE);
	for (i = 0; (k = config_key_at(p, i)) != NULL; i++) {
		if (i >= CONFIG_KEYS_MAX)
			return BAD(ENVDB_ERR_ABI,
				   "declares more than %d configuration keys (is the "
				   "list terminated by a NULL name?)",
				   CONFIG_KEYS_MAX);
		if (k->struct_size != first->struct_size)
			return BAD(ENVDB_ERR_ABI,
				   "configuration key #%zu is %zu bytes but the first one is %zu",
				   i, k->struct_size, first->struct_size);
		if (!key_name_valid(k->name))
			return BAD(ENVDB_ERR_ABI, "configuration key #%zu has an invalid name", i);
		for (j = 0; j < i; j++) {
			o = config_key_at(p, j);
			if (strcmp(k->name, o->name) == 0)
				return BAD(ENVDB_ERR_ABI, "declares configuration key %s twice",
					   k->name);
		}
	}
	return ENVDB_OK;
}

/* True when the file name of `path` without its extension (".so", ".la")
 * is `name`: the module a second, differently named instance loads. */
static bool module_named(const char *path, const char *name)
{
	const char *base, *dot;
	size_t len;

	if (path == NULL || name == NULL)
		return false;
	base = strrchr(path, '/');
	base = base ? base + 1 : path;
	dot = strrchr(base, '.');
	len = dot ? (size_t)(dot - base) : strlen(base);
	return len == strlen(name) && strncmp(base, name, len) == 0;
}

/* url_schemes (ABI 1.1): adapters only; at most URL_SCHEMES_MAX entries of
 * [a-z][a-z0-9+.-]* (RFC 3986 schemes, lowercase), none repeated. */
static int validate_url_schemes(const envdbi_plugin *p)
{
	const char *const *v = p->desc.url_schemes;
	size_t i, j, n;

	if (v == NULL)
		return ENVDB_OK;
	if (p->desc.kind != ENVDB_PLUGIN_ADAPTER)
		return BAD(ENVDB_ERR_ABI, "url_schemes is given but only adapters serve URLs");
	for (i = 0; v[i] != NULL; i++) {
		const char *sch = v[i];
		if (i == URL_SCHEMES_MAX)
			return BAD(ENVDB_ERR_ABI,
				   "url_schemes has more than %d entries (or lacks its NULL "
				   "terminator)",
				   URL_SCHEMES_MAX);
		n = strnlen(sch, URL_SCHEME_LEN_MAX + 1);
		if (n == 0 || n > URL_SCHEME_LEN_MAX || !(sch[0] >= 'a' && sch[0] <= 'z'))
			return BAD(ENVDB_ERR_ABI,
				   "url_schemes[%zu] is not a lowercase URL scheme "
				   "[a-z][a-z0-9+.-]{0,%d}",
				   i, URL_SCHEME_LEN_MAX - 1);
		for (j = 1; j < n; j++)
			if (!((sch[j] >= 'a' && sch[j] <= 'z') || (sch[j] >= '0' && sch[j] <= '9') ||
			      sch[j] == '+' || sch[j] == '.' || sch[j] == '-'))
				return BAD(ENVDB_ERR_ABI,
					   "url_schemes[%zu] is not a lowercase URL scheme "
					   "[a-z][a-z0-9+.-]{0,%d}",
					   i, URL_SCHEME_LEN_MAX - 1);
		for (j = 0; j < i; j++)
			if (strcmp(v[j], sch) == 0)
				return BAD(ENVDB_ERR_ABI, "url_schemes lists '%s' twice", sch);
	}
	return ENVDB_OK;
}

static int validate_descriptor(envdbi_plugin *p, const envdbi_plugin_spec *spec,
			       const envdb_plugin_descriptor *d)
{
	size_t have = sizeof(envdb_plugin_descriptor);
	int rc;

	if (d == NULL)
		return BAD(ENVDB_ERR_ABI, "the entry returned no descriptor");
	if (d->struct_size < DESC_V1_0_SIZE)
		return BAD(ENVDB_ERR_ABI,
			   "descriptor is too short: struct_size is %zu bytes, plugin ABI 1.0 "
			   "needs at least %zu",
			   d->struct_size, (size_t)DESC_V1_0_SIZE);
	if (d->struct_size > 65536)
		return BAD(ENVDB_ERR_ABI, "descriptor struct_size %zu is implausible",
			   d->struct_size);
	memcpy(&p->desc, d, d->struct_size < have ? d->struct_size : have);
	if (p->desc.abi_major != ENVDB_ABI_MAJOR)
		return BAD(ENVDB_ERR_ABI,
			   "built for plugin ABI %u.%u, this host speaks ABI %d.%d (the major "
			   "must be equal)",
			   p->desc.abi_major, p->desc.abi_minor, ENVDB_ABI_MAJOR, ENVDB_ABI_MINOR);
	if (p->desc.abi_minor > ENVDB_ABI_MINOR)
		return BAD(ENVDB_ERR_ABI,
			   "needs plugin ABI %u.%u, this host provides only %d.%d (newer minor)",
			   p->desc.abi_major, p->desc.abi_minor, ENVDB_ABI_MAJOR, ENVDB_ABI_MINOR);
	if (p->desc.name == NULL)
		return BAD(ENVDB_ERR_ABI, "descriptor has no name (name is NULL)");
	if (!name_valid(p->desc.name))
		return BAD(ENVDB_ERR_ABI, "descriptor name is not [a-z0-9_-]{1,64}");
	/* The manifest name is the instance's name.  It equals the descriptor's,
	 * or the manifest gives an explicit path to a module of that name:
	 * `name: legacy_kms, path: kms.so` is a second kms instance (the v4 keys
	 * the migration decrypts with; core/MIGRATION.md). */
	if (strcmp(p->desc.name, spec->name) != 0 && !module_named(spec->path, p->desc.name))
		return BAD(ENVDB_ERR_CONFIG,
			   "the plugin calls itself '%s' but the manifest names it '%s'",
			   p->desc.name, spec->name);
	if (p->desc.kind != ENVDB_PLUGIN_ADAPTER && p->desc.kind != ENVDB_PLUGIN_ENCRYPTOR)
		return BAD(ENVDB_ERR_ABI, "descriptor has an unknown kind %u", p->desc.kind);
	if (p->desc.kind != spec->kind)
		return BAD(ENVDB_ERR_CONFIG, "is an %s plugin but the manifest lists it as an %s",
			   kind_name(p->desc.kind), kind_name(spec->kind));
	p->kind = p->desc.kind;
	if (p->desc.init == NULL)
		return BAD(ENVDB_ERR_ABI, "descriptor has no init function");
	if (p->desc.fini == NULL)
		return BAD(ENVDB_ERR_ABI, "descriptor has no fini function");
	if ((rc = validate_ops(p)) != ENVDB_OK)
		return rc;
	if ((rc = validate_config_keys(p)) != ENVDB_OK)
		return rc;
	if ((rc = validate_url_schemes(p)) != ENVDB_OK)
		return rc;
	p->thread_safe = (p->desc.flags & ENVDB_PLUGIN_THREAD_SAFE) != 0;
	return ENVDB_OK;
}

#undef BAD

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */
/* ------------------------------------------------------------------------ */

/* The configuration handed to init, and the secrets it borrows. */
typedef struct plugin_config {
	envdb_config_entry *entries;
	size_t n;
	envdbi_secret **secrets;
	size_t n_secrets;
} plugin_config;

static void plugin_config_free(plugin_config *c)
{
	size_t i;

	for (i = 0; i < c->n_secrets; i++)
		envdbi_secret_free(c->secrets[i]);
	free(c->secrets);
	free(c->entries);
	memset(c, 0, sizeof(*c));
}

static const envdb_config_key *declared(const envdbi_plugin *p, const char *name, size_t len)
{
	const envdb_config_key *k;
	size_t i;

	for (i = 0; (k = config_key_at(p, i)) != NULL; i++)
		if (strlen(k->name) == len && strncmp(k->name, name, len) == 0)
			return k;
	return NULL;
}

static size_t suffix_base(const char *key, const char *suffix)
{
	size_t lk = strlen(key), ls = strlen(suffix);

	if (lk > ls && strcmp(key + lk - ls, suffix) == 0)
		return lk - ls;
	return 0;
}

static void declared_list(char *out, size_t cap, const envdbi_plugin *p)
{
	const envdb_config_key *k;
	size_t used = 0, i;

	out[0] = '\0';
	for (i = 0; (k = config_key_at(p, i)) != NULL && used < cap; i++) {
		int n = snprintf(out + used, cap - used, "%s%s%s", used ? ", " : "", k->name,
				 (k->flags & ENVDB_CONFIG_SECRET) ? " (secret)" : "");
		if (n < 0)
			break;
		used += (size_t)n;
	}
	if (out[0] == '\0')
		snprintf(out, cap, "none");
}

static int config_error(const envdbi_manifest *m, size_t idx, const envdbi_plugin *p, int line,
			int col, const char *key, const char *cause, int status)
{
	return envdbi_error(status, NULL, "%s:%d:%d: plugins[%zu].config%s%s: %s (plugin %s (%s))",
			    m->path, line, col, idx, key ? "." : "", key ? key : "", cause, p->name,
			    p->path);
}

/* Whether the directories on the path to file `path` are trusted
 * (envdbi_trusted_dirs): a relative path is taken from the working
 * directory. */
static bool secret_dirs_trusted(const char *path, char *why, size_t why_cap)
{
	char dir[PATH_MAX], cwd[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t n;
	int w;

	if (path[0] == '/') {
		n = slash == path ? 1 : (size_t)(slash - path);
		if (n >= sizeof dir) {
			snprintf(why, why_cap, "secret file %s: path too long", path);
			return false;
		}
		memcpy(dir, path, n);
		dir[n] = '\0';
	} else {
		if (getcwd(cwd, sizeof cwd) == NULL) {
			int e = errno;
			snprintf(why, why_cap,
				 "secret file %s: cannot find the working directory: %s", path,
				 strerror(e));
			return false;
		}
		n = slash != NULL ? (size_t)(slash - path) : 0;
		w = snprintf(dir, sizeof dir, "%s%s%.*s", cwd,
			     n > 0 && strcmp(cwd, "/") != 0 ? "/" : "", (int)n, path);
		if (w < 0 || (size_t)w >= sizeof dir) {
			snprintf(why, why_cap, "secret file %s: path too long", path);
			return false;
		}
	}
	return envdbi_trusted_dirs(dir, why, why_cap);
}

/* Read a secret file into secure memory.  The rules of every trusted file
 * (core/trust.c: owned by the effective user or root, directories on its
 * path writable by nobody else), and more: a regular file, not a symbolic
 * link, that neither group nor others may access at all.  Opened without
 * blocking, so a FIFO planted there is refused instead of hanging the
 * process. */
int envdbi_read_secret_file(envdbi_secret **out, const char *path, char *why, size_t why_cap)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	ssize_t got;
	int fd, e, rc = ENVDB_ERR_CONFIG;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		e = errno;
		if (e == ELOOP) {
			snprintf(why, why_cap,
				 "secret file %s is a symbolic link (name the file itself)", path);
			return ENVDB_ERR_CONFIG;
		}
		snprintf(why, why_cap, "cannot open secret file %s: %s", path, strerror(e));
		return e == ENOENT ? ENVDB_ERR_CONFIG : ENVDB_ERR_IO;
	}
	if (fstat(fd, &st) != 0) {
		e = errno;
		snprintf(why, why_cap, "cannot check secret file %s: %s", path, strerror(e));
		rc = ENVDB_ERR_IO;
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, why_cap, "secret file %s is not a regular file (%s)", path,
			 S_ISFIFO(st.st_mode)                         ? "a FIFO"
			 : S_ISDIR(st.st_mode)                        ? "a directory"
			 : S_ISSOCK(st.st_mode)                       ? "a socket"
			 : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
								      : "not a file");
		goto done;
	}
	if (!envdbi_trusted(path, &st, why, why_cap) || !secret_dirs_trusted(path, why, why_cap))
		goto done;
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(why, why_cap,
			 "secret file %s is accessible by group or others (mode %04o); "
			 "make it readable by its owner only (chmod 600)",
			 path, (unsigned)(st.st_mode & 07777));
		goto done;
	}
	if (st.st_size > SECRET_FILE_MAX) {
		snprintf(why, why_cap, "secret file %s is larger than %d bytes", path,
			 SECRET_FILE_MAX);
		goto done;
	}
	buf = envdbi_secure_alloc(SECRET_FILE_MAX + 1);
	if (buf == NULL) {
		snprintf(why, why_cap, "out of secure memory reading %s", path);
		rc = ENVDB_ERR_NOMEM;
		goto done;
	}
	while (len < SECRET_FILE_MAX && (got = read(fd, buf + len, SECRET_FILE_MAX - len)) != 0) {
		if (got < 0) {
			e = errno;
			if (e == EINTR)
				continue;
			snprintf(why, why_cap, "cannot read secret file %s: %s", path, strerror(e));
			rc = ENVDB_ERR_IO;
			goto done;
		}
		len += (size_t)got;
	}
	/* One trailing newline is formatting, not part of the secret. */
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len == 0) {
		snprintf(why, why_cap, "secret file %s is empty", path);
		goto done;
	}
	*out = envdbi_secret_new(buf, len);
	if (*out == NULL) {
		snprintf(why, why_cap, "out of secure memory reading %s", path);
		rc = ENVDB_ERR_NOMEM;
		goto done;
	}
	rc = ENVDB_OK;
done:
	envdbi_secure_free(buf);
	close(fd);
	return rc;
}

/* Remember where secret `key` came from (takes `source`; NULL: out of
 * memory, and config_secret will not find it). */
static void secret_source_add(envdbi_plugin *p, const char *key, bool is_file, char *source)
{
	if (source == NULL)
		return;
	p->secret_sources[p->n_secret_sources].key = key;
	p->secret_sources[p->n_secret_sources].is_file = is_file;
	p->secret_sources[p->n_secret_sources].source = source;
	p->n_secret_sources++;
}

static void secret_sources_free(envdbi_plugin *p)
{
	size_t i;

	for (i = 0; i < p->n_secret_sources; i++)
		free(p->secret_sources[i].source);
	free(p->secret_sources);
	p->secret_sources = NULL;
	p->n_secret_sources = 0;
}

int envdbi_plugin_secret_read(const envdbi_plugin *p, const char *key, envdbi_secret **out)
{
	const struct envdbi_secret_source *src = NULL;
	char why[1024];
	const char *val;
	size_t i;
	int rc;

	*out = NULL;
	for (i = 0; i < p->n_secret_sources && src == NULL; i++)
		if (strcmp(p->secret_sources[i].key, key) == 0)
			src = &p->secret_sources[i];
	if (src == NULL)
		return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
				    "plugin %s: the manifest gives no secret %s (%s_file or %s_env)",
				    p->name, key, key, key);
	if (src->is_file) {
		rc = envdbi_read_secret_file(out, src->source, why, sizeof(why));
		if (rc != ENVDB_OK)
			return envdbi_error(rc, NULL, "plugin %s: secret %s: %s", p->name, key, why);
		return ENVDB_OK;
	}
	val = getenv(src->source);
	if (val == NULL || val[0] == '\0')
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "plugin %s: secret %s: environment variable %s is %s", p->name,
				    key, src->source, val ? "empty" : "not set");
	*out = envdbi_secret_new(val, strlen(val));
	if (*out == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "plugin %s: secret %s: out of secure memory",
				    p->name, key);
	return ENVDB_OK;
}

/* Check the manifest's configuration of plugin `idx` against what the
 * plugin declares, resolve secret references, and build what init gets. */
static int build_config(plugin_config *out, const envdbi_manifest *m, size_t idx,
			envdbi_plugin *p)
{
	const envdbi_plugin_spec *spec = &m->plugins[idx];
	const envdb_config_key *k;
	char why[1024], list[512];
	size_t i, j;
	int rc = ENVDB_OK;

	memset(out, 0, sizeof(*out));
	out->entries = calloc(spec->n_config + 1, sizeof(*out->entries));
	out->secrets = calloc(spec->n_config + 1, sizeof(*out->secrets));
	p->secret_sources = calloc(spec->n_config + 1, sizeof(*p->secret_sources));
	if (out->entries == NULL || out->secrets == NULL || p->secret_sources == NULL) {
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "plugin %s: out of memory", p->name);
		goto fail;
	}
	for (i = 0; i < spec->n_config; i++) {
		const envdbi_kv *kv = &spec->config[i];
		size_t base_file = suffix_base(kv->key, "_file");
		size_t base_env = suffix_base(kv->key, "_env");
		size_t base = base_file ? base_file : base_env;
		envdb_config_entry *e = &out->entries[out->n];
		envdbi_secret *sec = NULL;

		k = declared(p, kv->key, strlen(kv->key));
		if (k != NULL) {
			if (k->flags & ENVDB_CONFIG_SECRET) {
				snprintf(
				    why, sizeof(why),
				    "inline secret refused: give %s_file (a file readable only "
				    "by its owner) or %s_env (an environment variable) instead",
				    k->name, k->name);
				rc = config_error(m, idx, p, kv->line, kv->column, kv->key, why,
						  ENVDB_ERR_CONFIG);
				goto fail;
			}
			e->struct_size = sizeof(*e);
			e->key = kv->key;
			e->value = kv->value;
			out->n++;
			continue;
		}
		k = base ? declared(p, kv->key, base) : NULL;
		if (k == NULL || !(k->flags & ENVDB_CONFIG_SECRET)) {
			declared_list(list, sizeof(list), p);
			snprintf(why, sizeof(why), "unknown key; the plugin declares: %s", list);
			rc = config_error(m, idx, p, kv->key_line, kv->key_column, kv->key, why,
					  ENVDB_ERR_CONFIG);
			goto fail;
		}
		/* A reference to a secret: exactly one per secret key. */
		for (j = 0; j < out->n; j++)
			if (strcmp(out->entries[j].key, k->name) == 0) {
				snprintf(why, sizeof(why),
					 "secret %s is already given by another "
					 "reference; give only one of %s_file, %s_env",
					 k->name, k->name, k->name);
				rc = config_error(m, idx, p, kv->key_line, kv->key_column, kv->key,
						  why, ENVDB_ERR_CONFIG);
				goto fail;
			}
		if (base_file) {
			char *fpath =
			    kv->value[0] == '/' ? strdup(kv->value) : path_join(m->dir, kv->value);
			if (fpath == NULL) {
				rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "plugin %s: out of memory",
						  p->name);
				goto fail;
			}
			rc = envdbi_read_secret_file(&sec, fpath, why, sizeof(why));
			if (rc == ENVDB_OK)
				secret_source_add(p, k->name, true, fpath);
			else
				free(fpath);
			if (rc != ENVDB_OK) {
				rc =
				    config_error(m, idx, p, kv->line, kv->column, kv->key, why, rc);
				goto fail;
			}
		} else {
			const char *val = getenv(kv->value);
			if (val == NULL || val[0] == '\0') {
				snprintf(why, sizeof(why), "environment variable %s is %s",
					 kv->value, val ? "empty" : "not set");
				rc = config_error(m, idx, p, kv->line, kv->column, kv->key, why,
						  ENVDB_ERR_CONFIG);
				goto fail;
			}
			sec = envdbi_secret_new(val, strlen(val));
			secret_source_add(p, k->name, false, strdup(kv->value));
			if (sec == NULL) {
				rc = envdbi_error(ENVDB_ERR_NOMEM, NULL,
						  "plugin %s: out of secure memory", p->name);
				goto fail;
			}
		}
		out->secrets[out->n_secrets++] = sec;
		e->struct_size = sizeof(*e);
		e->key = k->name; /* static in the plugin */
		e->value = sec->data;
		out->n++;
	}

	/* Every required key must be there (a secret one by reference). */
	for (i = 0; (k = config_key_at(p, i)) != NULL; i++) {
		bool found = false;
		if (!(k->flags & ENVDB_CONFIG_REQUIRED))
			continue;
		for (j = 0; j < out->n && !found; j++)
			found = strcmp(out->entries[j].key, k->name) == 0;
		if (!found) {
			if (k->flags & ENVDB_CONFIG_SECRET)
				snprintf(why, sizeof(why),
					 "missing required secret (give %s_file or %s_env)",
					 k->name, k->name);
			else
				snprintf(why, sizeof(why), "missing required key");
			rc = config_error(m, idx, p, spec->line, spec->column, k->name, why,
					  ENVDB_ERR_CONFIG);
			goto fail;
		}
	}
	return ENVDB_OK;
fail:
	plugin_config_free(out);
	secret_sources_free(p);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Module hooks: module_load before the first init of any instance of a     */
/* module, module_unload after the last fini.  A module is known by its     */
/* descriptor's address (two instances of one .so share it).  ltdl_lock.    */
/* ------------------------------------------------------------------------ */

typedef struct module_use {
	const void *key;
	unsigned users;
} module_use;

static module_use *modules;
static size_t n_modules;

static int module_acquire(envdbi_plugin *p, const void *key)
{
	module_use *u = NULL, *v;
	size_t i;
	int rc = ENVDB_OK;

	pthread_mutex_lock(&ltdl_lock);
	for (i = 0; i < n_modules && u == NULL; i++)
		if (modules[i].key == key)
			u = &modules[i];
	if (u == NULL) {
		if ((v = realloc(modules, (n_modules + 1) * sizeof(*v))) == NULL) {
			rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "plugin %s (%s): out of memory",
					  p->name, p->path);
			goto done;
		}
		modules = v;
		u = &modules[n_modules++];
		u->key = key;
		u->users = 0;
	}
	if (u->users == 0 && (rc = envdbi_host_module_load(p)) != ENVDB_OK) {
		envdbi_error_prefix("plugin %s (%s): ", p->name, p->path);
		goto done;
	}
	u->users++;
	p->module_key = key;
	p->module_counted = true;
done:
	pthread_mutex_unlock(&ltdl_lock);
	return rc;
}

static void module_release(envdbi_plugin *p)
{
	size_t i;

	if (!p->module_counted)
		return;
	pthread_mutex_lock(&ltdl_lock);
	for (i = 0; i < n_modules; i++)
		if (modules[i].key == p->module_key && modules[i].users > 0) {
			if (--modules[i].users == 0) {
				envdbi_host_module_unload(p);
				modules[i] = modules[--n_modules];
				if (n_modules == 0) {
					free(modules);
					modules = NULL;
				}
			}
			break;
		}
	p->module_counted = false;
	pthread_mutex_unlock(&ltdl_lock);
}

/* ------------------------------------------------------------------------ */
/* Loading one plugin, loading them all                                      */
/* ------------------------------------------------------------------------ */

static void plugin_unload(envdbi_plugin *p)
{
	if (p == NULL)
		return;
	envdbi_host_fini(p);
	module_release(p);
	secret_sources_free(p);
	close_module(p);
	if (p->fd >= 0)
		close(p->fd);
	if (p->lock_ready)
		pthread_mutex_destroy(&p->lock);
	free(p->name);
	free(p->path);
	free(p);
}

/* Set p->path for a plugin named by the relative path `rel`: the first
 * directory of m's plugin_path that holds it, else the plugin directory.
 * A plugin_path directory is believed not to hold the file only once it
 * passed the checks of core/trust.c (every directory from / to it), or
 * whoever could write it would choose which plugin is found further down
 * the path; one that does not exist is skipped. */
static int plugin_search(envdbi_plugin *p, const envdbi_manifest *m, const char *rel)
{
	const char *dir = envdbi_plugin_dir(m);
	char why[1024], *real, *cand;
	struct stat st;
	size_t i;

	for (i = 0; i < m->n_plugin_path; i++) {
		const char *d = m->plugin_path[i];

		if ((real = realpath(d, NULL)) == NULL) {
			if (errno == ENOENT || errno == ENOTDIR)
				continue;
			return envdbi_error(ENVDB_ERR_IO, NULL,
					    "plugin %s: plugin_path directory %s: %s", p->name, d,
					    strerror(errno));
		}
		if (!envdbi_trusted_dirs(real, why, sizeof(why))) {
			free(real);
			return envdbi_error(ENVDB_ERR_CONFIG, NULL,
					    "plugin %s: refused: plugin_path directory %s: %s",
					    p->name, d, why);
		}
		free(real);
		if ((cand = path_join(d, rel)) == NULL)
			return envdbi_error(ENVDB_ERR_NOMEM, NULL, "plugin %s: out of memory",
					    p->name);
		if (lstat(cand, &st) == 0 || (errno != ENOENT && errno != ENOTDIR)) {
			p->path = cand; /* open_checked says what is wrong with it */
			return ENVDB_OK;
		}
		free(cand);
	}
	if (dir[0] != '/')
		return envdbi_error(ENVDB_ERR_CONFIG, NULL,
				    "plugin %s (%s): the plugin directory '%s' is not absolute; "
				    "plugins are never searched relative to the current directory",
				    p->name, rel, dir);
	if ((p->path = path_join(dir, rel)) == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "plugin %s: out of memory", p->name);
	return ENVDB_OK;
}

static int plugin_load(envdbi_plugin **out, const envdbi_manifest *m, size_t idx, unsigned flags,
		       char **memo)
{
	const envdbi_plugin_spec *spec = &m->plugins[idx];
	const envdb_plugin_descriptor *d;
	envdbi_plugin *p;
	envdb_plugin_entry_fn entry = NULL;
	plugin_config cfg = {0};
	envdb_config config;
	char load_path[PATH_MAX];
	int rc;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "plugin %s: out of memory", spec->name);
	p->fd = -1;
	p->name = strdup(spec->name);
	if (p->name == NULL) {
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "plugin %s: out of memory", spec->name);
		goto fail;
	}
	if (spec->path[0] == '/') {
		p->path = strdup(spec->path);
	} else if ((rc = plugin_search(p, m, spec->path)) != ENVDB_OK) {
		if (p->path == NULL)
			p->path = strdup(spec->path);
		goto fail;
	}
	if (p->path == NULL) {
		rc = envdbi_error(ENVDB_ERR_NOMEM, NULL, "plugin %s: out of memory", spec->name);
		goto fail;
	}
	p->kind = spec->kind;
	p->call_timeout_ms = spec->call_timeout_ms;

	if ((rc = open_checked(p, load_path, sizeof(load_path), memo)) != ENVDB_OK)
		goto fail;
	pthread_mutex_lock(&ltdl_lock);
	rc = open_module(p, load_path, &entry);
	pthread_mutex_unlock(&ltdl_lock);
	if (rc != ENVDB_OK)
		goto fail;
	d = entry();
	if ((rc = validate_descriptor(p, spec, d)) != ENVDB_OK)
		goto fail;
	if ((rc = build_config(&cfg, m, idx, p)) != ENVDB_OK)
		goto fail;
	if (pthread_mutex_init(&p->lock, NULL) != 0) {
		rc = envdbi_error(ENVDB_ERR_GENERIC, NULL, "plugin %s: cannot create its lock",
				  p->name);
		goto fail;
	}
	p->lock_ready = true;
	envdbi_host_prepare(p);
	if (!(flags & ENVDBI_LOAD_NO_INIT)) {
		config.struct_size = sizeof(config);
		config.entries = cfg.entries;
		config.n_entries = cfg.n;
		config.base_dir = m->dir;
		if ((rc = module_acquire(p, d)) != ENVDB_OK)
			goto fail;
		rc = envdbi_host_init(p, &config);
		if (rc != ENVDB_OK) {
			envdbi_error_prefix("plugin %s (%s): ", p->name, p->path);
			goto fail;
		}
	}
	plugin_config_free(&cfg); /* wipes the secrets: init copied what it keeps */
	*out = p;
	return ENVDB_OK;
fail:
	plugin_config_free(&cfg);
	plugin_unload(p);
	return rc;
}

int envdbi_plugins_load_ex(envdbi_plugins **out, const envdbi_manifest *m, unsigned flags)
{
	envdbi_plugins *set;
	char *memo = NULL; /* the last plugin directory found trusted */
	size_t i;
	int rc;

	if (out == NULL || m == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "plugins: no manifest given");
	*out = NULL;
	if ((rc = envdbi_sodium_init()) != ENVDB_OK)
		return rc;
	set = calloc(1, sizeof(*set));
	if (set == NULL || (set->v = calloc(m->n_plugins + 1, sizeof(*set->v))) == NULL ||
	    (set->dir = strdup(envdbi_plugin_dir(m))) == NULL ||
	    (set->search = calloc(m->n_plugin_path + 1, sizeof(*set->search))) == NULL) {
		if (set != NULL) {
			free(set->v);
			free(set->dir);
		}
		free(set);
		return envdbi_error(ENVDB_ERR_NOMEM, NULL, "plugins: out of memory");
	}
	for (i = 0; i < m->n_plugin_path; i++)
		if ((set->search[set->n_search] = strdup(m->plugin_path[i])) != NULL)
			set->n_search++;
	set->search[set->n_search++] = set->dir;
	for (i = 0; i < m->n_plugins; i++) {
		envdbi_plugin *p = NULL;
		rc = plugin_load(&p, m, i, flags, &memo);
		if (rc == ENVDB_OK) {
			set->v[set->n++] = p;
			continue;
		}
		if (m->plugins[i].critical) {
			free(memo);
			envdbi_plugins_free(set);
			return rc;
		}
		envdbi_log(ENVDB_LOG_WARNING, "%s; skipped (the plugin is not critical)",
			   envdb_error_last()->message);
	}
	free(memo);
	*out = set;
	return ENVDB_OK;
}

int envdbi_plugins_load(envdbi_plugins **out, const envdbi_manifest *m)
{
	return envdbi_plugins_load_ex(out, m, 0);
}

void envdbi_plugins_free(envdbi_plugins *set)
{
	size_t i;

	if (set == NULL)
		return;
	/* Reverse order: a plugin loaded later may rely on one loaded earlier. */
	for (i = set->n; i > 0; i--)
		plugin_unload(set->v[i - 1]);
	for (i = 0; i < set->n_installed; i++) {
		free(set->installed[i].name);
		envdbi_strv_free(set->installed[i].schemes, set->installed[i].n_schemes);
	}
	free(set->installed);
	for (i = 0; i + 1 < set->n_search; i++)
		free(set->search[i]); /* the last one is set->dir */
	free(set->search);
	free(set->dir);
	free(set->v);
	free(set);
}

/* ------------------------------------------------------------------------ */
/* Adapters by URL scheme (ABI 1.1 url_schemes)                              */
/* ------------------------------------------------------------------------ */

static bool schemes_have(const char *const *v, size_t n, const char *scheme)
{
	size_t i;

	for (i = 0; i < n && v[i] != NULL; i++)
		if (strcasecmp(v[i], scheme) == 0)
			return true;
	return false;
}

/* Read the descriptor of the module at `path` into *out when it is an ABI
 * 1.1 adapter with url_schemes.  With ltdl_lock held; never calls init. */
static void scan_one(installed_adapter *out, const char *path)
{
	envdbi_plugin probe;
	lt_dladvise advise = NULL;
	lt_dlhandle h = NULL;
	entry_ptr e = {NULL};
	const envdb_plugin_descriptor *d;
	char mod[128], sym[256];
	size_t i, n;

	memset(out, 0, sizeof(*out));
	memset(&probe, 0, sizeof(probe));
	if (lt_dladvise_init(&advise) != 0 || lt_dladvise_local(&advise) != 0 ||
	    (h = lt_dlopenadvise(path, advise)) == NULL)
		goto done;
	e.ptr = lt_dlsym(h, ENVDB_PLUGIN_ENTRY_SYMBOL);
	if (e.ptr == NULL) {
		module_name(mod, sizeof(mod), path);
		snprintf(sym, sizeof(sym), "%s_LTX_%s", mod, ENVDB_PLUGIN_ENTRY_SYMBOL);
		e.ptr = lt_dlsym(h, sym);
	}
	if (e.ptr == NULL || (d = e.fn()) == NULL ||
	    !ENVDB_STRUCT_HAS(d, envdb_plugin_descriptor, url_schemes) ||
	    d->abi_major != ENVDB_ABI_MAJOR || d->kind != ENVDB_PLUGIN_ADAPTER ||
	    d->name == NULL || !name_valid(d->name) || d->url_schemes == NULL)
		goto done;
	probe.name = (char *)d->name;
	probe.path = (char *)path;
	memcpy(&probe.desc, d, sizeof(probe.desc));
	if (validate_url_schemes(&probe) != ENVDB_OK) {
		envdbi_log(ENVDB_LOG_WARNING, "%s; its url_schemes are ignored",
			   envdb_error_last()->message);
		goto done;
	}
	for (n = 0; d->url_schemes[n] != NULL; n++)
		;
	out->name = strdup(d->name);
	out->schemes = calloc(n + 1, sizeof(*out->schemes));
	if (out->name == NULL || out->schemes == NULL)
		goto fail;
	for (i = 0; i < n; i++) {
		if ((out->schemes[i] = strdup(d->url_schemes[i])) == NULL)
			goto fail;
		out->n_schemes++;
	}
	goto done;
fail:
	free(out->name);
	envdbi_strv_free(out->schemes, out->n_schemes);
	memset(out, 0, sizeof(*out));
done:
	if (advise != NULL)
		lt_dladvise_destroy(&advise);
	if (h != NULL)
		lt_dlclose(h);
}

static bool installed_has(const envdbi_plugins *set, const char *name)
{
	size_t i;

	for (i = 0; i < set->n_installed; i++)
		if (strcmp(set->installed[i].name, name) == 0)
			return true;
	return false;
}

/* Read the descriptors of every adapter installed in one directory of the
 * search path.  With ltdl_lock held.  A directory or file that fails the
 * checks of core/trust.c is not opened; an adapter already found in an
 * earlier directory shadows one of the same name here, as for loading. */
static void scan_dir(envdbi_plugins *set, const char *dir)
{
	char why[1024], *real;
	struct dirent *de;
	struct stat st;
	DIR *d;

	if (dir == NULL || dir[0] != '/' || (real = realpath(dir, NULL)) == NULL)
		return;
	if (!envdbi_trusted_dirs(real, why, sizeof(why)) || (d = opendir(real)) == NULL) {
		free(real);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		installed_adapter a, *v;
		char *path;

		if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0 ||
		    (path = path_join(real, de->d_name)) == NULL)
			continue;
		if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
		    !envdbi_trusted(path, &st, why, sizeof(why))) {
			free(path);
			continue;
		}
		scan_one(&a, path);
		free(path);
		if (a.name == NULL)
			continue;
		if (installed_has(set, a.name) ||
		    (v = realloc(set->installed, (set->n_installed + 1) * sizeof(*v))) == NULL) {
			free(a.name);
			envdbi_strv_free(a.schemes, a.n_schemes);
			continue;
		}
		set->installed = v;
		set->installed[set->n_installed++] = a;
	}
	closedir(d);
	free(real);
}

/* Read the descriptors of every adapter installed on the search path, once. */
static void scan_installed(envdbi_plugins *set)
{
	size_t i;

	if (set->scanned)
		return;
	set->scanned = true;
	pthread_mutex_lock(&ltdl_lock);
	if (ltdl_acquire() != ENVDB_OK) {
		pthread_mutex_unlock(&ltdl_lock);
		return;
	}
	for (i = 0; i < set->n_search; i++)
		scan_dir(set, set->search[i]);
	ltdl_release();
	pthread_mutex_unlock(&ltdl_lock);
}

int envdbi_adapter_of_scheme(envdbi_plugins *set, const char *scheme, const char **name)
{
	const char *found = NULL, *twice = NULL;
	size_t i;

	*name = NULL;
	if (scheme == NULL)
		return envdbi_error(ENVDB_ERR_MISUSE, NULL, "adapter of scheme: no scheme given");
	/* the loaded adapters first: they are the deployment's */
	for (i = 0; set != NULL && i < set->n; i++) {
		const envdbi_plugin *p = set->v[i];
		if (p->kind != ENVDB_PLUGIN_ADAPTER || p->desc.url_schemes == NULL ||
		    !schemes_have(p->desc.url_schemes, URL_SCHEMES_MAX, scheme))
			continue;
		if (found == NULL)
			found = p->name;
		else if (twice == NULL)
			twice = p->name;
	}
	/* then those installed but not configured (a v4 row may name a driver
	 * the v5 deployment has not set up yet) */
	if (found == NULL && set != NULL) {
		scan_installed(set);
		for (i = 0; i < set->n_installed; i++) {
			const installed_adapter *a = &set->installed[i];
			if (!schemes_have((const char *const *)a->schemes, a->n_schemes, scheme))
				continue;
			if (found == NULL)
				found = a->name;
			else if (twice == NULL && strcmp(a->name, found) != 0)
				twice = a->name;
		}
	}
	if (found == NULL)
		return envdbi_error(ENVDB_ERR_NOT_FOUND, NULL,
				    "unknown scheme '%s': no loaded or installed adapter serves it",
				    scheme);
	if (twice != NULL)
		return envdbi_error(ENVDB_ERR_INVALID, NULL,
				    "scheme '%s' is served by two adapters, %s and %s", scheme,
				    found, twice);
	*name = found;
	return ENVDB_OK;
}

size_t envdbi_plugins_count(const envdbi_plugins *set)
{
	return set ? set->n : 0;
}

envdbi_plugin *envdbi_plugins_at(const envdbi_plugins *set, size_t i)
{
	return set && i < set->n ? set->v[i] : NULL;
}

envdbi_plugin *envdbi_plugins_find(const envdbi_plugins *set, const char *name, uint32_t kind)
{
	size_t i;

	if (set == NULL || name == NULL)
		return NULL;
	for (i = 0; i < set->n; i++)
		if (strcmp(set->v[i]->name, name) == 0 && (kind == 0 || set->v[i]->kind == kind))
			return set->v[i];
	return NULL;
}

const char *envdbi_plugin_name(const envdbi_plugin *p)
{
	return p ? p->name : NULL;
}

const char *envdbi_plugin_path(const envdbi_plugin *p)
{
	return p ? p->path : NULL;
}

const envdb_plugin_descriptor *envdbi_plugin_descriptor(const envdbi_plugin *p)
{
	return p ? &p->desc : NULL;
}

uint64_t envdbi_plugin_capabilities(const envdbi_plugin *p)
{
	return p ? p->caps : 0;
}

uint32_t envdbi_plugin_kind(const envdbi_plugin *p)
{
	return p ? p->kind : 0;
}
