/*
 * tests/fuzz/fuzz_kms.c — libFuzzer harness of the kms encryptor's
 * ciphertext parsing and decryption (plugins/kms/seal.c): arbitrary bytes
 * as a ciphertext through key_of, decrypt and rewrap must be refused with a
 * typed status (never a crash, a leak or a read past the input), and a
 * ciphertext the plugin made must round-trip, and fail with
 * ENVDB_ERR_INTEGRITY under other associated data.  The plugin runs with a
 * minimal host of its own (its sources are compiled in) on a keyring
 * created in a temporary directory.  Seeds: corpus/kms/ (the first input
 * byte chooses the action, the rest is the ciphertext or plaintext).
 */
#include "config.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include <envdb/encryptor.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const envdb_plugin_descriptor *envdb_plugin_entry_v1(void);

static void *h_alloc(envdb_host_ctx *c, size_t n)
{
	(void)c;
	return malloc(n ? n : 1);
}
static void *h_realloc(envdb_host_ctx *c, void *p, size_t n)
{
	(void)c;
	return realloc(p, n ? n : 1);
}
static void h_free(envdb_host_ctx *c, void *p)
{
	(void)c;
	free(p);
}
static void *h_salloc(envdb_host_ctx *c, size_t n)
{
	(void)c;
	return sodium_malloc(n ? n : 1);
}
static void h_sfree(envdb_host_ctx *c, void *p)
{
	(void)c;
	sodium_free(p);
}
static void h_log(envdb_host_ctx *c, int level, const char *fmt, ...) ENVDB_PRINTF(3, 4);
static void h_log(envdb_host_ctx *c, int level, const char *fmt, ...)
{
	(void)c;
	(void)level;
	(void)fmt;
}
static int h_error(envdb_host_ctx *c, int status, const char *native, const char *fmt, ...)
	ENVDB_PRINTF(4, 5);
static int h_error(envdb_host_ctx *c, int status, const char *native, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	(void)c;
	(void)native;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap); /* formats every argument */
	va_end(ap);
	return status < 0 ? status : ENVDB_ERR_GENERIC;
}
static int64_t h_zero(envdb_host_ctx *c)
{
	(void)c;
	return 0;
}
static int64_t h_wall(envdb_host_ctx *c)
{
	(void)c;
	return 1700000000;
}
static int h_random(envdb_host_ctx *c, void *buf, size_t len)
{
	(void)c;
	randombytes_buf(buf, len);
	return 0;
}

static envdb_host host = {
	.struct_size = sizeof(envdb_host),
	.abi_major = ENVDB_ABI_MAJOR,
	.abi_minor = ENVDB_ABI_MINOR,
	.alloc = h_alloc,
	.realloc = h_realloc,
	.free = h_free,
	.secure_alloc = h_salloc,
	.secure_free = h_sfree,
	.log = h_log,
	.error = h_error,
	.deadline_ms = h_zero,
	.now_ms = h_zero,
	.wall_s = h_wall,
	.random = h_random,
};

static const envdb_encryptor_ops *ops;
static void *inst;
static char good_ct[1024];
static size_t good_len;

static const unsigned char aad1[] = "envdb-credential-v1\0id-one\0db-one";
static const unsigned char aad2[] = "envdb-credential-v1\0id-two\0db-one";

static void setup(void)
{
	const envdb_plugin_descriptor *d = envdb_plugin_entry_v1();
	char dir[] = "/tmp/envdb-fuzz-kms-XXXXXX", keyring[64], idb[128];
	envdb_config_entry e = {sizeof(e), "keyring_dir", keyring};
	envdb_config cfg = {sizeof(cfg), &e, 1, "/"};
	envdb_buffer id = {sizeof(id), idb, sizeof(idb), 0};
	envdb_buffer ct = {sizeof(ct), good_ct, sizeof(good_ct), 0}, kid = id;

	if (sodium_init() < 0 || mkdtemp(dir) == NULL)
		abort();
	snprintf(keyring, sizeof(keyring), "%s/keyring", dir);
	ops = d->ops;
	if (d->init(&inst, &host, &cfg) != ENVDB_OK || ops->key_generate(inst, 1, &id) != 0)
		abort();
	if (ops->encrypt(inst, "s3cret-token", 12, aad1, sizeof(aad1) - 1, &ct, &kid) != 0)
		abort();
	good_len = ct.len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char outb[4096], idb[256];
	envdb_buffer out = {sizeof(out), (char *)outb, sizeof(outb), 0};
	envdb_buffer id = {sizeof(id), (char *)idb, sizeof(idb), 0};
	const char *in;
	size_t n;
	int rc;

	if (ops == NULL)
		setup();
	if (size == 0)
		return 0;
	in = (const char *)data + 1;
	n = size - 1;
	switch (data[0] % 4) {
	case 0: /* arbitrary ciphertext: parse, key id, open */
		rc = ops->key_of(inst, in, n, &id);
		if (rc == ENVDB_OK && (id.len >= id.cap || idb[id.len] != '\0'))
			abort();
		rc = ops->decrypt(inst, in, n, aad1, sizeof(aad1) - 1, &out);
		/* no forgery: only what was sealed under aad1 opens */
		if (rc == ENVDB_OK && !(out.len == 12 && memcmp(outb, "s3cret-token", 12) == 0))
			abort();
		break;
	case 1: { /* arbitrary ciphertext through rewrap */
		unsigned char back[64];
		envdb_buffer pt = {sizeof(pt), (char *)back, sizeof(back), 0};

		rc = ops->rewrap(inst, in, n, aad1, sizeof(aad1) - 1, &out, &id);
		if (rc == ENVDB_OK &&
		    (ops->decrypt(inst, (char *)outb, out.len, aad1, sizeof(aad1) - 1, &pt) != 0 ||
		     pt.len != 12 || memcmp(back, "s3cret-token", 12) != 0))
			abort();
		break;
	}
	case 2: { /* arbitrary plaintext: round trip, and bound to its AAD */
		char ctb[8192];
		envdb_buffer ct = {sizeof(ct), ctb, sizeof(ctb), 0};

		if (n > 2048)
			break;
		if (ops->encrypt(inst, in, n, aad1, sizeof(aad1) - 1, &ct, &id) != ENVDB_OK)
			abort();
		if (ops->decrypt(inst, ctb, ct.len, aad1, sizeof(aad1) - 1, &out) != ENVDB_OK ||
		    out.len != n || memcmp(outb, in, n) != 0)
			abort();
		if (ops->decrypt(inst, ctb, ct.len, aad2, sizeof(aad2) - 1, &out) !=
		    ENVDB_ERR_INTEGRITY)
			abort();
		break;
	}
	default: /* a mutation of the good ciphertext must not open */
		if (good_len > 0) {
			char ctb[1024];
			/* not the last character: its low bits may be unused */
			size_t pos = n > 0 ? (size_t)data[1] % (good_len - 1) : 0;

			memcpy(ctb, good_ct, good_len);
			ctb[pos] ^= (char)(n > 1 ? (data[2] | 1) : 1);
			rc = ops->decrypt(inst, ctb, good_len, aad1, sizeof(aad1) - 1, &out);
			if (rc == ENVDB_OK)
				abort();
		}
		break;
	}
	return 0;
}
