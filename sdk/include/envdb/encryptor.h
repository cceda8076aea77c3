/*
 * envdb/encryptor.h — the encryptor ABI: a plugin (a KMS, a local keyring,
 * an HSM) that encrypts credential secrets before they reach the control
 * plane.
 *
 * An encryptor's descriptor has kind ENVDB_PLUGIN_ENCRYPTOR and its ops
 * point to a static envdb_encryptor_ops.
 *
 * Ciphertexts are self-describing printable ASCII (no NUL, no whitespace):
 * they carry at least a format version and the id of the key that sealed
 * them, so that any key of the ring can open them and rewrap can move them
 * to the current key.  Associated data (AAD) binds a ciphertext to its row:
 * decryption with different AAD must fail with ENVDB_ERR_INTEGRITY, as must
 * any modification of the ciphertext.  An unknown key id is
 * ENVDB_ERR_NOT_FOUND; a malformed ciphertext is ENVDB_ERR_INVALID.
 *
 * Output buffers follow the envdb_buffer protocol (plugin.h).  Plaintext
 * outputs are in host secure memory.  Every operation is side-effect free
 * except key_generate, so retrying after ENVDB_ERR_BUFFER_TOO_SMALL is safe.
 *
 * Introduced in ABI 1.0.
 */
#ifndef ENVDB_ENCRYPTOR_H
#define ENVDB_ENCRYPTOR_H

#include <envdb/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Capability bits (envdb_encryptor_ops.capabilities). */
enum envdb_encryptor_caps {
	/** key_list and key_generate are available. */
	ENVDB_ENCRYPTOR_CAP_KEY_MANAGE = 1u << 0,
	/** rewrap is available. */
	ENVDB_ENCRYPTOR_CAP_REWRAP = 1u << 1,
	/* Added in ABI 1.1. */
	/** health() is available. */
	ENVDB_ENCRYPTOR_CAP_HEALTH = 1u << 2,
	/** is_current() is available: the plugin can tell whether a ciphertext
	 * is sealed under the current version of the current key, where a KMS
	 * rotates key versions behind one key id. */
	ENVDB_ENCRYPTOR_CAP_KEY_VERSIONS = 1u << 3
};

/** Receives one key from key_list().  Strings borrowed for the call.
 * `created_at` is seconds since the epoch or 0 when unknown.  Return 0 to
 * continue. */
typedef int (*envdb_encryptor_key_cb)(void *cb_ctx, const char *key_id, int is_current,
				      int64_t created_at);

/** Required.  Id of the key new ciphertexts are sealed with. */
typedef int (*envdb_encryptor_current_key_fn)(void *instance, envdb_buffer *key_id);

/** Required.  Seal `pt` (borrowed, secure memory) bound to `aad`.  The
 * ciphertext goes into *ct, the id of the sealing key into *key_id. */
typedef int (*envdb_encryptor_encrypt_fn)(void *instance, const void *pt, size_t pt_len,
					  const void *aad, size_t aad_len, envdb_buffer *ct,
					  envdb_buffer *key_id);

/** Required.  Open `ct` bound to `aad`; plaintext into *pt (secure memory,
 * NUL-terminated for convenience, len excludes the NUL). */
typedef int (*envdb_encryptor_decrypt_fn)(void *instance, const char *ct, size_t ct_len,
					  const void *aad, size_t aad_len, envdb_buffer *pt);

/** Required.  Id of the key that sealed `ct`, without decrypting. */
typedef int (*envdb_encryptor_key_of_fn)(void *instance, const char *ct, size_t ct_len,
					 envdb_buffer *key_id);

/** Optional (ENVDB_ENCRYPTOR_CAP_REWRAP).  Re-seal `ct` under the current
 * key with the same aad; the plaintext never leaves the plugin.  The new
 * ciphertext goes into *out, its key id into *key_id.  A ciphertext already
 * under the current key is re-sealed too (the host decides what to skip). */
typedef int (*envdb_encryptor_rewrap_fn)(void *instance, const char *ct, size_t ct_len,
					 const void *aad, size_t aad_len, envdb_buffer *out,
					 envdb_buffer *key_id);

/** Optional (ENVDB_ENCRYPTOR_CAP_KEY_MANAGE).  Call cb once per key. */
typedef int (*envdb_encryptor_key_list_fn)(void *instance, envdb_encryptor_key_cb cb,
					   void *cb_ctx);

/** Optional (ENVDB_ENCRYPTOR_CAP_KEY_MANAGE).  Create a new key; make it the
 * current one when make_current is non-zero.  Its id goes into *key_id.  Not
 * idempotent: the host passes a buffer of at least 256 bytes. */
typedef int (*envdb_encryptor_key_generate_fn)(void *instance, int make_current,
					       envdb_buffer *key_id);

/** Optional (ENVDB_ENCRYPTOR_CAP_HEALTH), ABI 1.1.  Check that the KMS is
 * reachable and the current key usable, without sealing anything the host
 * keeps (like an adapter's probe).  0 when healthy. */
typedef int (*envdb_encryptor_health_fn)(void *instance);

/** Optional (ENVDB_ENCRYPTOR_CAP_KEY_VERSIONS), ABI 1.1.  Set *is_current to 1
 * when `ct` is sealed under the current key at its current version, else 0.
 * Rewrap skips exactly the ciphertexts for which this says 1; without it the
 * host compares key_of() with current_key(). */
typedef int (*envdb_encryptor_is_current_fn)(void *instance, const char *ct, size_t ct_len,
					     int *is_current);

/** The encryptor operations.  Static, pointed to by the descriptor's ops. */
typedef struct envdb_encryptor_ops {
	size_t struct_size;
	uint64_t capabilities; /**< envdb_encryptor_caps */
	envdb_encryptor_current_key_fn current_key;
	envdb_encryptor_encrypt_fn encrypt;
	envdb_encryptor_decrypt_fn decrypt;
	envdb_encryptor_key_of_fn key_of;
	envdb_encryptor_rewrap_fn rewrap;
	envdb_encryptor_key_list_fn key_list;
	envdb_encryptor_key_generate_fn key_generate;
	/* Members above are valid for ABI 1.0. */
	envdb_encryptor_health_fn health;         /**< ABI 1.1 */
	envdb_encryptor_is_current_fn is_current; /**< ABI 1.1 */
} envdb_encryptor_ops;

#ifdef __cplusplus
}
#endif

#endif /* ENVDB_ENCRYPTOR_H */
