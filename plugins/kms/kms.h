/*
 * plugins/kms/kms.h — private interfaces between the files of the kms
 * encryptor plugin (a libsodium keyring in a directory).  Nothing here
 * crosses the plugin boundary: the module is built with hidden visibility
 * and exports only envdb_plugin_entry_v1.
 *
 *   plugin.c   descriptor, configuration, init/fini, key_list, key_generate,
 *              health
 *   keyring.c  key ids, key files, the `current` file, the in-memory ring
 *   seal.c     the ciphertext format: encrypt, decrypt, key_of, rewrap,
 *              is_current
 */
#ifndef ENVDB_KMS_H
#define ENVDB_KMS_H

#include <stddef.h>
#include <stdint.h>

#include <envdb/encryptor.h>

/** Longest key id. */
#define KMS_ID_MAX 64
/** Bytes of a key (XChaCha20-Poly1305). */
#define KMS_KEY_BYTES 32
/** Name of the file holding the current key id. */
#define KMS_CURRENT_FILE "current"
/** Suffix of key files: <key id>.key */
#define KMS_KEY_SUFFIX ".key"

/** One key of the ring.  Allocated with host->alloc; `key` with
 * sodium_malloc and kept PROT_NONE except while an operation uses it. */
typedef struct kms_key {
	char id[KMS_ID_MAX + 1];
	int64_t created_at;
	unsigned char *key;
	int protect_idle; /* PROT_NONE between operations (key_protection: idle) */
} kms_key;

/** The plugin instance.  Not thread-safe (the ring grows on demand and the
 * key pages change protection during a call): the host serializes calls. */
typedef struct kms {
	const envdb_host *host; /* borrowed from the host until fini */
	char *dir;              /* keyring directory as configured, for messages */
	int dir_fd;             /* O_DIRECTORY descriptor of the keyring */
	kms_key **keys;         /* sorted by (created_at, id); host->alloc */
	size_t n_keys, cap_keys;
	int protect_idle;       /* configuration key_protection: idle */
} kms;

/* keyring.c ----------------------------------------------------------------- */

/** True when `s` (of length len) is a valid key id: [a-z0-9-]{1,64}. */
int kms_id_is_valid(const char *s, size_t len);

/** Open (creating it 0700 when missing) and check the keyring directory,
 * load every key file and check the current one.  Reports its errors. */
int kms_ring_open(kms *k, const char *dir);
/** Wipe and free every key; close the directory. */
void kms_ring_close(kms *k);

/** Load any key file not yet in the ring (another process may have added
 * one).  Reports its errors. */
int kms_ring_refresh(kms *k, const char *op);

/** Find key `id`, loading its file if it is not in the ring yet.
 * ENVDB_ERR_NOT_FOUND when there is no such key. */
int kms_ring_get(kms_key **out, kms *k, const char *id, const char *op);

/** The current key.  ENVDB_ERR_CONFIG "no current key" when the keyring has
 * none.  The `current` file is read on every call, so a key made current by
 * another process is used at once. */
int kms_ring_current(kms_key **out, kms *k, const char *op);

/** Read the current key id into `id` (KMS_ID_MAX + 1 bytes).  Returns 1 when
 * there is one, 0 when there is none, or a negative status (reported). */
int kms_ring_current_id(char *id, kms *k, const char *op);

/** Create a new key file (O_EXCL, 0600, synced), add it to the ring and
 * make it current when asked.  Its id goes into `id` (KMS_ID_MAX + 1). */
int kms_ring_generate(char *id, kms *k, int make_current);

/** Make the key bytes readable for the duration of a use / hide them again
 * (with key_protection: idle; otherwise the key stays read-only and these
 * cost nothing). */
void kms_key_unlock(kms_key *key);
void kms_key_lock(kms_key *key);

/* seal.c -------------------------------------------------------------------- */

int kms_encrypt(void *instance, const void *pt, size_t pt_len, const void *aad, size_t aad_len,
		envdb_buffer *ct, envdb_buffer *key_id);
int kms_decrypt(void *instance, const char *ct, size_t ct_len, const void *aad, size_t aad_len,
		envdb_buffer *pt);
int kms_key_of(void *instance, const char *ct, size_t ct_len, envdb_buffer *key_id);
int kms_rewrap(void *instance, const char *ct, size_t ct_len, const void *aad, size_t aad_len,
	       envdb_buffer *out, envdb_buffer *key_id);
/** ABI 1.1 (ENVDB_ENCRYPTOR_CAP_KEY_VERSIONS): *is_current is 1 when `ct` is
 * sealed under the current key. */
int kms_is_current(void *instance, const char *ct, size_t ct_len, int *is_current);

#endif /* ENVDB_KMS_H */
