/*
 * tests/test_abi.c — the plugin ABI is append-only.
 *
 * Every member of every boundary struct of ABI 1.0 is pinned here by offset
 * and size (LP64 data model: x86_64, aarch64, ...), and every enum value by
 * number.  A member that moves, changes type or disappears breaks the build
 * of this test with a message naming it; appending a member at the end of a
 * struct (the one change a minor version may make, sdk/doc/ABI.md §2) does
 * not.  A later minor adds its members to the tables below, never edits the
 * existing lines.
 *
 * The run-time tests check what the headers implement (ENVDB_STRUCT_HAS,
 * the buffer protocol helpers, envdb_config_get) and that the ABI version
 * of the headers, of envdb-plugin.pc and of the ABI changelog agree.
 */
#include "config.h"

#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <envdb/adapter.h>
#include <envdb/encryptor.h>

#define ABI_RULE " (boundary structs only grow at their end: sdk/doc/ABI.md)"

#define PIN(type, member, off, size)                                                    \
	_Static_assert(offsetof(type, member) == (off), #type "." #member " moved" ABI_RULE); \
	_Static_assert(sizeof(((type *)0)->member) == (size),                              \
		       #type "." #member " changed size" ABI_RULE)

/* The size of the struct as ABI 1.0 defined it: through its last 1.0
 * member.  The struct may be longer in a later minor. */
#define PIN_V1_0_END(type, last, size)                                                  \
	_Static_assert(offsetof(type, last) + sizeof(((type *)0)->last) == (size),         \
		       #type ": its ABI 1.0 part changed" ABI_RULE);                       \
	_Static_assert(sizeof(type) >= (size), #type " shrank" ABI_RULE)

#define PIN_VALUE(name, value) _Static_assert((name) == (value), #name " was renumbered" ABI_RULE)

/* ------------------------------------------------------------------------ */
/* Enum values: every data model                                             */
/* ------------------------------------------------------------------------ */

PIN_VALUE(ENVDB_ABI_MAJOR, 1);
PIN_VALUE(ENVDB_OK, 0);
PIN_VALUE(ENVDB_ERR_GENERIC, -1);
PIN_VALUE(ENVDB_ERR_MISUSE, -2);
PIN_VALUE(ENVDB_ERR_NOT_FOUND, -3);
PIN_VALUE(ENVDB_ERR_EXISTS, -4);
PIN_VALUE(ENVDB_ERR_AUTH, -5);
PIN_VALUE(ENVDB_ERR_PERMISSION, -6);
PIN_VALUE(ENVDB_ERR_UNAVAILABLE, -7);
PIN_VALUE(ENVDB_ERR_TIMEOUT, -8);
PIN_VALUE(ENVDB_ERR_INTEGRITY, -9);
PIN_VALUE(ENVDB_ERR_BUFFER_TOO_SMALL, -10);
PIN_VALUE(ENVDB_ERR_NOT_SUPPORTED, -11);
PIN_VALUE(ENVDB_ERR_NOMEM, -12);
PIN_VALUE(ENVDB_ERR_IO, -13);
PIN_VALUE(ENVDB_ERR_CONFIG, -14);
PIN_VALUE(ENVDB_ERR_ABI, -15);
PIN_VALUE(ENVDB_ERR_INVALID, -16);
PIN_VALUE(ENVDB_ERR_STATE, -17);
PIN_VALUE(ENVDB_ERR_BUSY, -18);
PIN_VALUE(ENVDB_PLUGIN_ADAPTER, 1);
PIN_VALUE(ENVDB_PLUGIN_ENCRYPTOR, 2);
PIN_VALUE(ENVDB_PLUGIN_THREAD_SAFE, 1u << 0);
PIN_VALUE(ENVDB_PLUGIN_REMOTE, 1u << 1);
PIN_VALUE(ENVDB_LOG_ERROR, 0);
PIN_VALUE(ENVDB_LOG_WARNING, 1);
PIN_VALUE(ENVDB_LOG_INFO, 2);
PIN_VALUE(ENVDB_LOG_DEBUG, 3);
PIN_VALUE(ENVDB_CONFIG_REQUIRED, 1u << 0);
PIN_VALUE(ENVDB_CONFIG_SECRET, 1u << 1);
PIN_VALUE(ENVDB_ADAPTER_OUTPUT_MIN, 4096);
PIN_VALUE(ENVDB_ADAPTER_CAP_READ_ONLY, 1u << 0);
PIN_VALUE(ENVDB_ADAPTER_CAP_ROTATE_OVERLAP, 1u << 1);
PIN_VALUE(ENVDB_ADAPTER_CAP_REVOKE, 1u << 2);
PIN_VALUE(ENVDB_ADAPTER_CAP_EXPIRY, 1u << 3);
PIN_VALUE(ENVDB_ADAPTER_CAP_PROBE, 1u << 4);
PIN_VALUE(ENVDB_ADAPTER_CAP_LIST, 1u << 5);
PIN_VALUE(ENVDB_ADAPTER_CAP_AUTHENTICATES, 1u << 6);
PIN_VALUE(ENVDB_ADAPTER_CAP_SUSPEND, 1u << 7);    /* 1.1 */
PIN_VALUE(ENVDB_ADAPTER_CAP_DEPLOYMENT, 1u << 8); /* 1.1 */
PIN_VALUE(ENVDB_AUTH_FULL_ACCESS, 1);
PIN_VALUE(ENVDB_AUTH_READ_ONLY, 2);
PIN_VALUE(ENVDB_ENCRYPTOR_CAP_KEY_MANAGE, 1u << 0);
PIN_VALUE(ENVDB_ENCRYPTOR_CAP_REWRAP, 1u << 1);
PIN_VALUE(ENVDB_ENCRYPTOR_CAP_HEALTH, 1u << 2);       /* 1.1 */
PIN_VALUE(ENVDB_ENCRYPTOR_CAP_KEY_VERSIONS, 1u << 3); /* 1.1 */
PIN_VALUE(ENVDB_MESSAGE_MAX, 1024);                   /* 1.1 */

/* ------------------------------------------------------------------------ */
/* Layouts: LP64                                                             */
/* ------------------------------------------------------------------------ */

#if defined(__LP64__) || defined(_LP64)
#define ABI_LAYOUT_PINNED 1

/* plugin.h */
PIN(envdb_buffer, struct_size, 0, 8);
PIN(envdb_buffer, data, 8, 8);
PIN(envdb_buffer, cap, 16, 8);
PIN(envdb_buffer, len, 24, 8);
PIN_V1_0_END(envdb_buffer, len, 32);

PIN(envdb_config_key, struct_size, 0, 8);
PIN(envdb_config_key, name, 8, 8);
PIN(envdb_config_key, description, 16, 8);
PIN(envdb_config_key, flags, 24, 4);
PIN_V1_0_END(envdb_config_key, flags, 28);

PIN(envdb_config_entry, struct_size, 0, 8);
PIN(envdb_config_entry, key, 8, 8);
PIN(envdb_config_entry, value, 16, 8);
PIN_V1_0_END(envdb_config_entry, value, 24);

PIN(envdb_config, struct_size, 0, 8);
PIN(envdb_config, entries, 8, 8);
PIN(envdb_config, n_entries, 16, 8);
PIN(envdb_config, base_dir, 24, 8);
PIN_V1_0_END(envdb_config, base_dir, 32);

PIN(envdb_host, struct_size, 0, 8);
PIN(envdb_host, abi_major, 8, 4);
PIN(envdb_host, abi_minor, 12, 4);
PIN(envdb_host, ctx, 16, 8);
PIN(envdb_host, alloc, 24, 8);
PIN(envdb_host, realloc, 32, 8);
PIN(envdb_host, free, 40, 8);
PIN(envdb_host, secure_alloc, 48, 8);
PIN(envdb_host, secure_free, 56, 8);
PIN(envdb_host, log, 64, 8);
PIN(envdb_host, error, 72, 8);
PIN(envdb_host, deadline_ms, 80, 8);
PIN(envdb_host, now_ms, 88, 8);
PIN(envdb_host, wall_s, 96, 8);
PIN(envdb_host, random, 104, 8);
PIN_V1_0_END(envdb_host, random, 112);
/* ABI 1.1 */
PIN(envdb_host, call_current, 112, 8);
PIN(envdb_host, call_error, 120, 8);
PIN(envdb_host, call_verror, 128, 8);
PIN(envdb_host, call_deadline_ms, 136, 8);
PIN(envdb_host, call_cancelled, 144, 8);
PIN(envdb_host, vlog, 152, 8);
PIN(envdb_host, verror, 160, 8);
PIN(envdb_host, config_secret, 168, 8);
PIN(envdb_host, deployment_id, 176, 8); /* 1.1, issue 16 §3 */

PIN(envdb_plugin_descriptor, struct_size, 0, 8);
PIN(envdb_plugin_descriptor, abi_major, 8, 4);
PIN(envdb_plugin_descriptor, abi_minor, 12, 4);
PIN(envdb_plugin_descriptor, name, 16, 8);
PIN(envdb_plugin_descriptor, version, 24, 8);
PIN(envdb_plugin_descriptor, description, 32, 8);
PIN(envdb_plugin_descriptor, kind, 40, 4);
PIN(envdb_plugin_descriptor, flags, 44, 4);
PIN(envdb_plugin_descriptor, config_keys, 48, 8);
PIN(envdb_plugin_descriptor, init, 56, 8);
PIN(envdb_plugin_descriptor, fini, 64, 8);
PIN(envdb_plugin_descriptor, ops, 72, 8);
PIN_V1_0_END(envdb_plugin_descriptor, ops, 80);
/* ABI 1.1 */
PIN(envdb_plugin_descriptor, module_load, 80, 8);
PIN(envdb_plugin_descriptor, module_unload, 88, 8);
PIN(envdb_plugin_descriptor, url_schemes, 96, 8);

/* adapter.h */
PIN(envdb_db_ref, struct_size, 0, 8);
PIN(envdb_db_ref, environment_id, 8, 8);
PIN(envdb_db_ref, database_name, 16, 8);
PIN(envdb_db_ref, url, 24, 8);
PIN(envdb_db_ref, metadata, 32, 8);
PIN_V1_0_END(envdb_db_ref, metadata, 40);
PIN(envdb_db_ref, deployment_id, 40, 8); /* 1.1 */

PIN(envdb_create_request, struct_size, 0, 8);
PIN(envdb_create_request, environment_id, 8, 8);
PIN(envdb_create_request, database_name, 16, 8);
PIN(envdb_create_request, region, 24, 8);
PIN(envdb_create_request, plan, 32, 8);
PIN(envdb_create_request, storage_limit_mb, 40, 8);
PIN_V1_0_END(envdb_create_request, storage_limit_mb, 48);
PIN(envdb_create_request, deployment_id, 48, 8); /* 1.1 */

PIN(envdb_mint_request, struct_size, 0, 8);
PIN(envdb_mint_request, credential_id, 8, 8);
PIN(envdb_mint_request, authorization, 16, 4);
PIN(envdb_mint_request, expires_at, 24, 8);
PIN(envdb_mint_request, previous_handle, 32, 8);
PIN_V1_0_END(envdb_mint_request, previous_handle, 40);
PIN(envdb_mint_request, granted_expires_at, 40, 8); /* 1.1 */
PIN(envdb_mint_request, previous_valid_until, 48, 8); /* 1.1 */

PIN(envdb_adapter_ops, struct_size, 0, 8);
PIN(envdb_adapter_ops, capabilities, 8, 8);
PIN(envdb_adapter_ops, database_name, 16, 8);
PIN(envdb_adapter_ops, create, 24, 8);
PIN(envdb_adapter_ops, drop, 32, 8);
PIN(envdb_adapter_ops, mint, 40, 8);
PIN(envdb_adapter_ops, revoke, 48, 8);
PIN(envdb_adapter_ops, probe, 56, 8);
PIN(envdb_adapter_ops, list, 64, 8);
PIN_V1_0_END(envdb_adapter_ops, list, 72);
PIN(envdb_adapter_ops, suspend, 72, 8); /* 1.1 */
PIN(envdb_adapter_ops, resume, 80, 8);  /* 1.1 */

/* encryptor.h */
PIN(envdb_encryptor_ops, struct_size, 0, 8);
PIN(envdb_encryptor_ops, capabilities, 8, 8);
PIN(envdb_encryptor_ops, current_key, 16, 8);
PIN(envdb_encryptor_ops, encrypt, 24, 8);
PIN(envdb_encryptor_ops, decrypt, 32, 8);
PIN(envdb_encryptor_ops, key_of, 40, 8);
PIN(envdb_encryptor_ops, rewrap, 48, 8);
PIN(envdb_encryptor_ops, key_list, 56, 8);
PIN(envdb_encryptor_ops, key_generate, 64, 8);
PIN_V1_0_END(envdb_encryptor_ops, key_generate, 72);
PIN(envdb_encryptor_ops, health, 72, 8);     /* 1.1 */
PIN(envdb_encryptor_ops, is_current, 80, 8); /* 1.1 */
#endif

/* Every data model: struct_size leads every boundary struct. */
#define LEADS(type) _Static_assert(offsetof(type, struct_size) == 0, #type ": struct_size must lead")
LEADS(envdb_buffer);
LEADS(envdb_config_key);
LEADS(envdb_config_entry);
LEADS(envdb_config);
LEADS(envdb_host);
LEADS(envdb_plugin_descriptor);
LEADS(envdb_db_ref);
LEADS(envdb_create_request);
LEADS(envdb_mint_request);
LEADS(envdb_adapter_ops);
LEADS(envdb_encryptor_ops);

/* ------------------------------------------------------------------------ */
/* Run-time checks                                                           */
/* ------------------------------------------------------------------------ */

START_TEST(test_layout_pinned)
{
#ifdef ABI_LAYOUT_PINNED
	/* The static assertions above compiled: nothing moved. */
	ck_assert_uint_eq(offsetof(envdb_host, random), 104);
#else
	/* Another data model: at least the declaration order holds. */
	ck_assert_uint_lt(offsetof(envdb_host, alloc), offsetof(envdb_host, random));
	ck_assert_uint_lt(offsetof(envdb_plugin_descriptor, name),
			  offsetof(envdb_plugin_descriptor, ops));
#endif
}
END_TEST

/* A struct as an older writer knew it must not "have" later members. */
START_TEST(test_struct_has)
{
	envdb_host h;

	memset(&h, 0, sizeof(h));
	h.struct_size = offsetof(envdb_host, random); /* a writer without `random` */
	ck_assert(ENVDB_STRUCT_HAS(&h, envdb_host, wall_s));
	ck_assert(!ENVDB_STRUCT_HAS(&h, envdb_host, random));
	h.struct_size = sizeof(h) + 64; /* a newer writer */
	ck_assert(ENVDB_STRUCT_HAS(&h, envdb_host, random));
	ck_assert(!ENVDB_STRUCT_HAS((envdb_host *)NULL, envdb_host, alloc));
}
END_TEST

START_TEST(test_buffer_protocol)
{
	char data[8];
	envdb_buffer b = { sizeof(b), NULL, 0, 0 };

	/* size query with no buffer */
	ck_assert_int_eq(envdb_buffer_set_str(&b, "abcdef"), ENVDB_ERR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(b.len, 6);
	/* one byte short: no room for the NUL, nothing written */
	memset(data, 'x', sizeof(data));
	b.data = data;
	b.cap = 6;
	ck_assert_int_eq(envdb_buffer_set_str(&b, "abcdef"), ENVDB_ERR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(b.len, 6);
	ck_assert_int_eq(data[0], 'x');
	/* exact */
	b.cap = 7;
	ck_assert_int_eq(envdb_buffer_set_str(&b, "abcdef"), ENVDB_OK);
	ck_assert_str_eq(data, "abcdef");
	ck_assert_uint_eq(b.len, 6);
	ck_assert_int_eq(data[7], 'x');
	/* binary with a NUL inside */
	b.cap = sizeof(data);
	ck_assert_int_eq(envdb_buffer_set(&b, "a\0b", 3), ENVDB_OK);
	ck_assert_uint_eq(b.len, 3);
	ck_assert_int_eq(data[3], '\0');
	ck_assert_int_eq(envdb_buffer_set(NULL, "a", 1), ENVDB_ERR_MISUSE);
}
END_TEST

START_TEST(test_config_get)
{
	envdb_config_entry e[2] = {
		{ sizeof(envdb_config_entry), "directory", "/srv/db" },
		{ sizeof(envdb_config_entry), "mode", "fast" },
	};
	envdb_config c = { sizeof(c), e, 2, "/etc/envdb" };

	ck_assert_str_eq(envdb_config_get(&c, "mode"), "fast");
	ck_assert_ptr_null(envdb_config_get(&c, "missing"));
	ck_assert_ptr_null(envdb_config_get(NULL, "mode"));
}
END_TEST

/* Read `key=value` from a .pc file. */
static char *pc_variable(const char *path, const char *key)
{
	char line[512];
	char *value = NULL;
	size_t n = strlen(key);
	FILE *f = fopen(path, "r");

	ck_assert_msg(f != NULL, "cannot open %s", path);
	while (value == NULL && fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, n) == 0 && line[n] == '=') {
			line[strcspn(line, "\n")] = '\0';
			value = strdup(line + n + 1);
		}
	fclose(f);
	return value;
}

/* The ABI version is said in three places: they agree. */
START_TEST(test_versions_agree)
{
	const char *builddir = getenv("ENVDB_TEST_BUILDDIR");
	const char *srcdir = getenv("ENVDB_TEST_SRCDIR");
	char path[4096], line[512], want[32], expect[32];
	char *major, *minor;
	int found = 0;
	FILE *f;

	ck_assert_msg(builddir != NULL && srcdir != NULL, "run through make check");
	snprintf(path, sizeof(path), "%s/sdk/envdb-plugin.pc", builddir);
	major = pc_variable(path, "abi_major");
	minor = pc_variable(path, "abi_minor");
	snprintf(expect, sizeof(expect), "%d", ENVDB_ABI_MAJOR);
	ck_assert_msg(major && strcmp(major, expect) == 0,
		      "envdb-plugin.pc abi_major %s, plugin.h %s (configure.ac and plugin.h "
		      "disagree)", major ? major : "(none)", expect);
	snprintf(expect, sizeof(expect), "%d", ENVDB_ABI_MINOR);
	ck_assert_msg(minor && strcmp(minor, expect) == 0,
		      "envdb-plugin.pc abi_minor %s, plugin.h %s (configure.ac and plugin.h "
		      "disagree)", minor ? minor : "(none)", expect);
	free(major);
	free(minor);

	/* Every minor has its changelog entry. */
	snprintf(path, sizeof(path), "%s/sdk/doc/CHANGELOG-ABI.md", srcdir);
	snprintf(want, sizeof(want), "## %d.%d ", ENVDB_ABI_MAJOR, ENVDB_ABI_MINOR);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	while (!found && fgets(line, sizeof(line), f) != NULL)
		found = strncmp(line, want, strlen(want)) == 0;
	fclose(f);
	ck_assert_msg(found, "%s has no \"%s\" entry for the ABI in plugin.h", path, want);
}
END_TEST

static Suite *abi_suite(void)
{
	Suite *s = suite_create("abi");
	TCase *tc = tcase_create("abi");

	tcase_add_test(tc, test_layout_pinned);
	tcase_add_test(tc, test_struct_has);
	tcase_add_test(tc, test_buffer_protocol);
	tcase_add_test(tc, test_config_get);
	tcase_add_test(tc, test_versions_agree);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(abi_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
