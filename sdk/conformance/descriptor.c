/*
 * sdk/conformance/descriptor.c — checks common to every plugin: the
 * descriptor and its ops table (sizes, ABI version, name, kind, flags,
 * configuration keys, required operations, capability bits agreeing with
 * the slots), initialization (a missing required key is refused cleanly; a
 * newer host with a longer services table is accepted), and finalization
 * (every allocation given back, then the findings of the whole run).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "kit.h"

/* Sizes of the ABI 1.0 structs: the last member each version defines. */
#define SIZE_THROUGH(type, m) (offsetof(type, m) + sizeof(((type *)0)->m))

static bool name_ok(const char *s, const char *extra)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || strchr(extra, *s)))
			return false;
	return true;
}

static bool one_line(const char *s)
{
	return s != NULL && *s != '\0' && strchr(s, '\n') == NULL;
}

const envdb_config_key *kit_config_key_at(const envdb_plugin_descriptor *desc, size_t i)
{
	const envdb_config_key *first = desc->config_keys, *k;
	size_t stride;

	if (first == NULL || first->name == NULL)
		return NULL;
	stride = first->struct_size >= SIZE_THROUGH(envdb_config_key, flags)
			 ? first->struct_size
			 : sizeof(envdb_config_key);
	k = (const envdb_config_key *)(const void *)((const char *)first + i * stride);
	return k->name != NULL ? k : NULL;
}

static void check_config_keys(const envdb_plugin_descriptor *desc)
{
	const envdb_config_key *k, *first = desc->config_keys;
	const uint32_t known = ENVDB_CONFIG_REQUIRED | ENVDB_CONFIG_SECRET;
	size_t i, j, n = 0;

	if (first == NULL || first->name == NULL) {
		kit_ok("descriptor: config keys", "none declared");
		return;
	}
	if (first->struct_size < SIZE_THROUGH(envdb_config_key, flags) ||
	    first->struct_size % sizeof(void *) != 0) {
		kit_fail("descriptor: config keys", "struct_size %zu: ABI 1.0 needs at least %zu "
			 "(a multiple of the pointer size)", first->struct_size,
			 SIZE_THROUGH(envdb_config_key, flags));
		return;
	}
	while (n < 1000 && kit_config_key_at(desc, n) != NULL)
		n++;
	if (n >= 1000) {
		kit_fail("descriptor: config keys", "no NULL-name terminator in the first 1000 "
			 "entries");
		return;
	}
	for (i = 0; i < n; i++) {
		k = kit_config_key_at(desc, i);
		if (k->struct_size != first->struct_size) {
			kit_fail("descriptor: config keys", "key #%zu: struct_size %zu, the first "
				 "key's is %zu (one array, one size)", i, k->struct_size,
				 first->struct_size);
			return;
		}
		if (!name_ok(k->name, "_")) {
			kit_fail("descriptor: config keys", "key '%s' is not [a-z0-9_]+", k->name);
			return;
		}
		if (!one_line(k->description)) {
			kit_fail("descriptor: config keys", "key '%s' has no one-line description",
				 k->name);
			return;
		}
		if (k->flags & ~known) {
			kit_fail("descriptor: config keys", "key '%s' has unknown flags 0x%x",
				 k->name, k->flags & ~known);
			return;
		}
		for (j = 0; j < i; j++)
			if (strcmp(kit_config_key_at(desc, j)->name, k->name) == 0) {
				kit_fail("descriptor: config keys", "key '%s' is declared twice",
					 k->name);
				return;
			}
	}
	kit_ok("descriptor: config keys", "%zu declared, well-formed", n);
}

bool kit_check_descriptor(const envdb_plugin_descriptor *desc, uint32_t kind,
			  const char *expected_name, void *ops_out, size_t ops_size)
{
	const uint32_t known_flags = ENVDB_PLUGIN_THREAD_SAFE | ENVDB_PLUGIN_REMOTE;
	size_t min_desc = SIZE_THROUGH(envdb_plugin_descriptor, ops);
	size_t min_ops;
	size_t have;
	bool usable = true;

	if (!kit_check(desc->struct_size >= min_desc, "descriptor: struct_size",
		       "%zu, ABI 1.0 needs at least %zu", desc->struct_size, min_desc))
		return false;
	kit_check(desc->abi_major == ENVDB_ABI_MAJOR && desc->abi_minor <= ENVDB_ABI_MINOR,
		  "descriptor: ABI version", "plugin built for ABI %u.%u, this host is %d.%d",
		  desc->abi_major, desc->abi_minor, ENVDB_ABI_MAJOR, ENVDB_ABI_MINOR);
	if (!name_ok(desc->name, "_-"))
		kit_fail("descriptor: name", "'%s' is not [a-z0-9_-]+",
			 desc->name ? desc->name : "(null)");
	else
		kit_check(expected_name == NULL || strcmp(expected_name, desc->name) == 0,
			  "descriptor: name", "'%s'%s%s", desc->name,
			  expected_name ? ", expected " : "", expected_name ? expected_name : "");
	if (!kit_check(desc->kind == kind, "descriptor: kind", "%u, expected %u (%s)",
		       desc->kind, kind, kind == ENVDB_PLUGIN_ADAPTER ? "adapter" : "encryptor"))
		usable = false;
	kit_check(one_line(desc->version) && one_line(desc->description),
		  "descriptor: version and description", "version '%s', description '%s'",
		  desc->version ? desc->version : "(null)",
		  desc->description ? desc->description : "(null)");
	kit_check((desc->flags & ~known_flags) == 0, "descriptor: flags",
		  "0x%x%s%s", desc->flags,
		  (desc->flags & ENVDB_PLUGIN_THREAD_SAFE) ? " THREAD_SAFE" : "",
		  (desc->flags & ENVDB_PLUGIN_REMOTE) ? " REMOTE" : "");
	if (!kit_check(desc->init != NULL && desc->fini != NULL, "descriptor: init and fini",
		       "init %s, fini %s", desc->init ? "present" : "missing",
		       desc->fini ? "present" : "missing"))
		usable = false;
	check_config_keys(desc);
	if (!usable)
		return false;
	if (!kit_check(desc->ops != NULL, "ops: present", "the descriptor's ops is %s",
		       desc->ops ? "set" : "NULL"))
		return false;

	/* Zero-extended copy: members the plugin's struct_size does not cover
	 * read as NULL, exactly as the host treats them. */
	have = *(const size_t *)desc->ops;
	min_ops = kind == ENVDB_PLUGIN_ADAPTER ? SIZE_THROUGH(envdb_adapter_ops, list)
					       : SIZE_THROUGH(envdb_encryptor_ops, key_generate);
	if (!kit_check(have >= min_ops, "ops: struct_size", "%zu, ABI 1.0 needs at least %zu",
		       have, min_ops))
		return false;
	memset(ops_out, 0, ops_size);
	memcpy(ops_out, desc->ops, have < ops_size ? have : ops_size);

	if (kind == ENVDB_PLUGIN_ADAPTER) {
		const envdb_adapter_ops *o = ops_out;
		const uint64_t known = ENVDB_ADAPTER_CAP_READ_ONLY | ENVDB_ADAPTER_CAP_ROTATE_OVERLAP |
				       ENVDB_ADAPTER_CAP_REVOKE | ENVDB_ADAPTER_CAP_EXPIRY |
				       ENVDB_ADAPTER_CAP_PROBE | ENVDB_ADAPTER_CAP_LIST |
				       ENVDB_ADAPTER_CAP_AUTHENTICATES |
				       ENVDB_ADAPTER_CAP_DEPLOYMENT /* ABI 1.1, no slot */;
		char why[256] = "";

		if (!kit_check(o->database_name && o->create && o->drop && o->mint,
			       "ops: required operations", "database_name %s, create %s, drop %s, "
			       "mint %s", o->database_name ? "ok" : "MISSING",
			       o->create ? "ok" : "MISSING", o->drop ? "ok" : "MISSING",
			       o->mint ? "ok" : "MISSING"))
			return false;
		if (o->capabilities & ~known)
			snprintf(why, sizeof(why), "unknown capability bits 0x%llx",
				 (unsigned long long)(o->capabilities & ~known));
		else if (!(o->capabilities & ENVDB_ADAPTER_CAP_PROBE) != !o->probe)
			snprintf(why, sizeof(why), "CAP_PROBE %s but the probe slot is %s",
				 (o->capabilities & ENVDB_ADAPTER_CAP_PROBE) ? "set" : "clear",
				 o->probe ? "set" : "NULL");
		else if (!(o->capabilities & ENVDB_ADAPTER_CAP_LIST) != !o->list)
			snprintf(why, sizeof(why), "CAP_LIST %s but the list slot is %s",
				 (o->capabilities & ENVDB_ADAPTER_CAP_LIST) ? "set" : "clear",
				 o->list ? "set" : "NULL");
		else if (!(o->capabilities & ENVDB_ADAPTER_CAP_REVOKE) != !o->revoke)
			snprintf(why, sizeof(why), "CAP_REVOKE %s but the revoke slot is %s",
				 (o->capabilities & ENVDB_ADAPTER_CAP_REVOKE) ? "set" : "clear",
				 o->revoke ? "set" : "NULL");
		if (!kit_check(why[0] == '\0', "ops: capabilities agree with the operations",
			       "%s", why[0] ? why : "consistent"))
			return false;
	} else {
		const envdb_encryptor_ops *o = ops_out;
		const uint64_t known = ENVDB_ENCRYPTOR_CAP_KEY_MANAGE | ENVDB_ENCRYPTOR_CAP_REWRAP;
		bool km = (o->capabilities & ENVDB_ENCRYPTOR_CAP_KEY_MANAGE) != 0;
		char why[256] = "";

		if (!kit_check(o->current_key && o->encrypt && o->decrypt && o->key_of,
			       "ops: required operations",
			       "current_key %s, encrypt %s, decrypt %s, key_of %s",
			       o->current_key ? "ok" : "MISSING", o->encrypt ? "ok" : "MISSING",
			       o->decrypt ? "ok" : "MISSING", o->key_of ? "ok" : "MISSING"))
			return false;
		if (o->capabilities & ~known)
			snprintf(why, sizeof(why), "unknown capability bits 0x%llx",
				 (unsigned long long)(o->capabilities & ~known));
		else if (!(o->capabilities & ENVDB_ENCRYPTOR_CAP_REWRAP) != !o->rewrap)
			snprintf(why, sizeof(why), "CAP_REWRAP %s but the rewrap slot is %s",
				 (o->capabilities & ENVDB_ENCRYPTOR_CAP_REWRAP) ? "set" : "clear",
				 o->rewrap ? "set" : "NULL");
		else if (km != (o->key_list != NULL) || km != (o->key_generate != NULL))
			snprintf(why, sizeof(why),
				 "CAP_KEY_MANAGE %s but key_list is %s and key_generate is %s",
				 km ? "set" : "clear", o->key_list ? "set" : "NULL",
				 o->key_generate ? "set" : "NULL");
		if (!kit_check(why[0] == '\0', "ops: capabilities agree with the operations",
			       "%s", why[0] ? why : "consistent"))
			return false;
	}
	return true;
}

/* ------------------------------------------------------------------------ */
/* init / fini                                                               */
/* ------------------------------------------------------------------------ */

int kit_instance_init(void **instance, const envdb_plugin_descriptor *desc,
		      const envdb_host *host, const kit_config *cfg, const char *omit)
{
	envdb_config *c = kit_config_borrow(cfg, omit);
	int rc;

	*instance = NULL;
	kit_call_begin("init");
	rc = desc->init(instance, host, c);
	kit_call_end("init", rc);
	kit_config_retire(c);
	return rc;
}

static void fini_instance(const envdb_plugin_descriptor *desc, void *instance)
{
	kit_call_begin("fini");
	desc->fini(instance);
	kit_call_end("fini", ENVDB_OK);
}

void *kit_init_checks(const envdb_plugin_descriptor *desc, const kit_config *cfg)
{
	const envdb_config_key *k;
	void *inst = NULL;
	long allocs, secure;
	size_t ki;
	int rc;

	/* Every required key, left out in turn: a clean refusal. */
	for (ki = 0; (k = kit_config_key_at(desc, ki)) != NULL; ki++) {
		char name[160];

		if (!(k->flags & ENVDB_CONFIG_REQUIRED))
			continue;
		snprintf(name, sizeof(name), "init: refuses a configuration without '%s'",
			 k->name);
		allocs = kit_live_allocs();
		secure = kit_live_secure();
		rc = kit_instance_init(&inst, desc, kit_host(), cfg, k->name);
		if (rc == ENVDB_OK) {
			kit_fail(name, "init succeeded without a required key");
			fini_instance(desc, inst);
			inst = NULL;
			continue;
		}
		kit_check(kit_live_allocs() == allocs && kit_live_secure() == secure, name,
			  "%s: \"%s\"; %ld host->alloc and %ld secure blocks left behind",
			  kit_status_name(rc), kit_report_get()->message, kit_live_allocs() - allocs,
			  kit_live_secure() - secure);
	}

	/* A host of a later minor (longer services table) must be accepted. */
	allocs = kit_live_allocs();
	secure = kit_live_secure();
	rc = kit_instance_init(&inst, desc, kit_host_newer(), cfg, NULL);
	if (kit_check(rc == ENVDB_OK, "init: accepts a newer host (ABI 1.x+1, longer table)",
		      "%s: \"%s\"", kit_status_name(rc), kit_report_get()->message)) {
		fini_instance(desc, inst);
		kit_check(kit_live_allocs() == allocs && kit_live_secure() == secure,
			  "fini: releases everything init allocated",
			  "%ld host->alloc and %ld secure blocks left after init + fini",
			  kit_live_allocs() - allocs, kit_live_secure() - secure);
	}

	inst = NULL;
	rc = kit_instance_init(&inst, desc, kit_host(), cfg, NULL);
	if (!kit_check(rc == ENVDB_OK, "init", "%s: \"%s\"", kit_status_name(rc),
		       kit_report_get()->message))
		return NULL;
	return inst;
}

void kit_fini_checks(const envdb_plugin_descriptor *desc, void *instance)
{
	kit_scan_live_allocs("before fini");
	fini_instance(desc, instance);
	if (kit_live_allocs() != 0)
		kit_finding(KIT_MEMORY,
			    "%ld host->alloc block(s) never released with host->free after fini",
			    kit_live_allocs());
	if (kit_live_secure() != 0)
		kit_finding(KIT_SECURE,
			    "%ld host->secure_alloc block(s) never released with "
			    "host->secure_free after fini",
			    kit_live_secure());
	kit_findings_report();
}
