/*
 * test_dirdb.c — unit tests of the dirdb adapter, driven through its
 * descriptor with the mini host: the behaviour specific to dirdb (files on
 * disk, the marker, refusing foreign directories) that the generic
 * conformance kit cannot know about.  Exit status 0 on success, 1 on
 * failure (automake's test protocol).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <envdb/adapter.h>

#include "mini_host.h"

const envdb_plugin_descriptor *envdb_plugin_entry_v1(void);

static int failures;

#define EXPECT(cond)                                                                     \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "%s:%d: expected %s (last plugin error: %s)\n",  \
				__FILE__, __LINE__, #cond, mini_host_last_message());    \
			failures++;                                                      \
		}                                                                        \
	} while (0)

#define ENV_ID "7d444840-9dc0-11d1-b245-5ffdce74fad2"
#define ENV_NAME "env_7d444840_9dc0_11d1_b245_5ffdce74fad2"

struct names {
	int seen;
};

static int count_name(void *ctx, const char *name)
{
	struct names *n = ctx;

	if (strcmp(name, ENV_NAME) == 0)
		n->seen++;
	return 0;
}

int main(void)
{
	const envdb_plugin_descriptor *desc = envdb_plugin_entry_v1();
	const envdb_adapter_ops *ops = desc->ops;
	char root[] = "/tmp/test-dirdb-XXXXXX";
	char path[8192], name_data[128], url_data[4096], meta_data[4096], sec1[4096], sec2[4096],
		h1[4096], h2[4096];
	envdb_buffer name = { sizeof(envdb_buffer), name_data, sizeof(name_data), 0 };
	envdb_buffer url = { sizeof(envdb_buffer), url_data, sizeof(url_data), 0 };
	envdb_buffer meta = { sizeof(envdb_buffer), meta_data, sizeof(meta_data), 0 };
	envdb_buffer s1 = { sizeof(envdb_buffer), sec1, sizeof(sec1), 0 };
	envdb_buffer s2 = { sizeof(envdb_buffer), sec2, sizeof(sec2), 0 };
	envdb_buffer hb1 = { sizeof(envdb_buffer), h1, sizeof(h1), 0 };
	envdb_buffer hb2 = { sizeof(envdb_buffer), h2, sizeof(h2), 0 };
	envdb_config_entry entries[1];
	envdb_config cfg = { sizeof(envdb_config), entries, 1, NULL };
	envdb_create_request creq = { sizeof(creq), ENV_ID, ENV_NAME, NULL, "free", 10 };
	envdb_mint_request mreq = { sizeof(mreq), "cred-1", ENVDB_AUTH_FULL_ACCESS, 0, NULL };
	envdb_db_ref ref = { sizeof(ref), ENV_ID, ENV_NAME, NULL, NULL };
	struct names seen = { 0 };
	envdb_host host;
	void *inst = NULL;
	struct stat st;

	mini_host_init(&host);
	if (mkdtemp(root) == NULL) {
		perror("mkdtemp");
		return 99;
	}
	EXPECT(desc->abi_major == ENVDB_ABI_MAJOR && desc->kind == ENVDB_PLUGIN_ADAPTER);

	/* init: the directory key is required */
	cfg.n_entries = 0;
	EXPECT(desc->init(&inst, &host, &cfg) == ENVDB_ERR_CONFIG);
	EXPECT(mini_host_last_status() == ENVDB_ERR_CONFIG);
	EXPECT(inst == NULL && mini_host_live_allocs() == 0);
	entries[0] = (envdb_config_entry){ sizeof(envdb_config_entry), "directory", root };
	cfg.n_entries = 1;
	EXPECT(desc->init(&inst, &host, &cfg) == ENVDB_OK);
	if (inst == NULL)
		return 1;

	/* database_name: deterministic, refuses what is not a uuid */
	EXPECT(ops->database_name(inst, ENV_ID, &name) == ENVDB_OK);
	EXPECT(strcmp(name_data, ENV_NAME) == 0 && name.len == strlen(ENV_NAME));
	EXPECT(ops->database_name(inst, "../../etc", &name) == ENVDB_ERR_INVALID);

	/* create: a directory with its marker; a second create is EXISTS */
	EXPECT(ops->create(inst, &creq, &url, &meta) == ENVDB_OK);
	snprintf(path, sizeof(path), "%s/%s/.dirdb", root, ENV_NAME);
	EXPECT(stat(path, &st) == 0 && S_ISREG(st.st_mode));
	EXPECT(strncmp(url_data, "dirdb://", 8) == 0 && strstr(url_data, ENV_NAME) != NULL);
	EXPECT(meta_data[0] == '{' && strstr(meta_data, "\"path\"") != NULL);
	mini_host_clear();
	EXPECT(ops->create(inst, &creq, &url, &meta) == ENVDB_ERR_EXISTS);
	EXPECT(mini_host_last_status() == ENVDB_ERR_EXISTS);
	EXPECT(ops->list(inst, count_name, &seen) == ENVDB_OK && seen.seen == 1);

	/* mint, rotate with overlap, revoke */
	EXPECT(ops->mint(inst, &ref, &mreq, &s1, &hb1) == ENVDB_OK);
	EXPECT(s1.len == 64 && strlen(sec1) == 64 && strncmp(h1, "tok-", 4) == 0);
	snprintf(path, sizeof(path), "%s/%s/tokens/%s", root, ENV_NAME, h1);
	EXPECT(stat(path, &st) == 0 && (st.st_mode & 077) == 0);
	mreq.previous_handle = h1;
	EXPECT(ops->mint(inst, &ref, &mreq, &s2, &hb2) == ENVDB_OK);
	EXPECT(strcmp(sec1, sec2) != 0 && strcmp(h1, h2) != 0);
	EXPECT(ops->probe(inst, &ref, sec1, s1.len) == ENVDB_OK);
	EXPECT(ops->probe(inst, &ref, sec2, s2.len) == ENVDB_OK);
	EXPECT(ops->revoke(inst, &ref, ENVDB_AUTH_FULL_ACCESS, h1) == ENVDB_OK);
	EXPECT(ops->revoke(inst, &ref, ENVDB_AUTH_FULL_ACCESS, h1) == ENVDB_OK);
	mini_host_clear();
	EXPECT(ops->probe(inst, &ref, sec1, s1.len) == ENVDB_ERR_AUTH);
	EXPECT(strstr(mini_host_last_message(), sec1) == NULL);
	EXPECT(ops->probe(inst, &ref, sec2, s2.len) == ENVDB_OK);
	EXPECT(ops->revoke(inst, &ref, ENVDB_AUTH_FULL_ACCESS, "../.dirdb") == ENVDB_ERR_INVALID);
	mreq.authorization = ENVDB_AUTH_READ_ONLY;
	EXPECT(ops->mint(inst, &ref, &mreq, &s1, &hb1) == ENVDB_ERR_NOT_SUPPORTED);
	EXPECT(mini_host_live_secure_allocs() == 0);

	/* a directory dirdb did not create is never dropped */
	snprintf(path, sizeof(path), "%s/env_00000000_0000_0000_0000_000000000000", root);
	EXPECT(mkdir(path, 0700) == 0);
	ref.database_name = "env_00000000_0000_0000_0000_000000000000";
	EXPECT(ops->drop(inst, &ref) == ENVDB_ERR_PERMISSION);
	EXPECT(stat(path, &st) == 0);
	rmdir(path);

	/* drop: gone from disk and from list; a second drop is success */
	ref.database_name = ENV_NAME;
	EXPECT(ops->drop(inst, &ref) == ENVDB_OK);
	EXPECT(ops->drop(inst, &ref) == ENVDB_OK);
	snprintf(path, sizeof(path), "%s/%s", root, ENV_NAME);
	EXPECT(stat(path, &st) != 0);
	seen.seen = 0;
	EXPECT(ops->list(inst, count_name, &seen) == ENVDB_OK && seen.seen == 0);
	EXPECT(ops->mint(inst, &ref, &mreq, &s1, &hb1) != ENVDB_OK);

	desc->fini(inst);
	EXPECT(mini_host_live_allocs() == 0 && mini_host_live_secure_allocs() == 0);
	rmdir(root);
	if (failures == 0)
		printf("test_dirdb: all passed\n");
	return failures ? 1 : 0;
}
