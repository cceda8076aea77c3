/*
 * plugins/kms/seal.c — the ciphertext format of the kms encryptor and the
 * operations on it.
 *
 *     edb1.<key id>.<base64url without padding of nonce || ciphertext || tag>
 *
 * XChaCha20-Poly1305 (IETF) with a random 24-byte nonce.  The associated
 * data given to the AEAD is the header "edb1.<key id>." followed by the
 * caller's associated data: the format version and the key id are
 * authenticated too, so a ciphertext whose key id was swapped for another
 * (even one with the same key material) fails with ENVDB_ERR_INTEGRITY.
 * The header cannot be ambiguous because a key id never contains a '.'.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "kms.h"

#define KMS_FORMAT "edb1"
#define KMS_NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define KMS_TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define KMS_B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
/* Secrets are tokens and passwords; anything larger is a mistake. */
#define KMS_MAX_PLAINTEXT (1u << 20)
/* "edb1." + id + "." */
#define KMS_HEADER_MAX (sizeof(KMS_FORMAT) + KMS_ID_MAX + 2)

/* A parsed and decoded ciphertext. */
typedef struct sealed {
	char id[KMS_ID_MAX + 1];
	const char *header;  /* borrowed: the "edb1.<id>." prefix of the input */
	size_t header_len;
	unsigned char *raw;  /* nonce || ciphertext || tag (host->alloc) */
	size_t raw_len;
} sealed;

static void sealed_clear(kms *k, sealed *s)
{
	if (s->raw != NULL)
		k->host->free(k->host->ctx, s->raw);
	s->raw = NULL;
}

static int sealed_parse(sealed *s, kms *k, const char *op, const char *ct, size_t ct_len)
{
	const size_t flen = strlen(KMS_FORMAT);
	const char *id, *dot, *body, *end = NULL;
	size_t i, id_len, body_len, max;

	memset(s, 0, sizeof(*s));
	if (ct == NULL)
		return k->host->error(k->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "%s: no ciphertext given", op);
	for (i = 0; i < ct_len; i++)
		if (ct[i] < 0x21 || ct[i] > 0x7e)
			return k->host->error(k->host->ctx, ENVDB_ERR_INVALID, NULL,
					      "%s: malformed ciphertext: byte %zu is not printable "
					      "ascii",
					      op, i);
	if (ct_len < 3 || memcmp(ct, "edb", 3) != 0)
		return k->host->error(k->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: malformed ciphertext: not an envdb kms ciphertext", op);
	if (ct_len <= flen || memcmp(ct, KMS_FORMAT, flen) != 0 || ct[flen] != '.') {
		dot = memchr(ct, '.', ct_len);
		if (dot != NULL && dot - ct <= 12)
			return k->host->error(k->host->ctx, ENVDB_ERR_INVALID, NULL,
					      "%s: unsupported ciphertext format '%.*s' (this "
					      "plugin reads " KMS_FORMAT ")",
					      op, (int)(dot - ct), ct);
		return k->host->error(k->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: malformed ciphertext: no format version", op);
	}
	id = ct + flen + 1;
	dot = memchr(id, '.', ct_len - flen - 1);
	if (dot == NULL)
		return k->host->error(k->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: malformed ciphertext: no key id", op);
	id_len = (size_t)(dot - id);
	if (!kms_id_is_valid(id, id_len))
		return k->host->error(k->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: malformed ciphertext: malformed key id", op);
	memcpy(s->id, id, id_len);
	s->id[id_len] = '\0';
	s->header = ct;
	s->header_len = (size_t)(dot + 1 - ct);
	body = dot + 1;
	body_len = ct_len - s->header_len;

	max = body_len / 4 * 3 + 3;
	s->raw = k->host->alloc(k->host->ctx, max);
	if (s->raw == NULL)
		return k->host->error(k->host->ctx, ENVDB_ERR_NOMEM, NULL, "%s: out of memory",
				      op);
	if (body_len == 0 ||
	    sodium_base642bin(s->raw, max, body, body_len, NULL, &s->raw_len, &end, KMS_B64) != 0 ||
	    end != body + body_len) {
		sealed_clear(k, s);
		return k->host->error(k->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: malformed ciphertext under key %s: bad base64url body",
				      op, s->id);
	}
	if (s->raw_len < KMS_NONCE_BYTES + KMS_TAG_BYTES) {
		sealed_clear(k, s);
		return k->host->error(k->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: malformed ciphertext under key %s: too short", op,
				      s->id);
	}
	return ENVDB_OK;
}

/* header || caller's aad, in host memory (associated data is not secret). */
static int full_aad(unsigned char **out, kms *k, const char *op, const void *header,
		    size_t header_len, const void *aad, size_t aad_len)
{
	unsigned char *p = k->host->alloc(k->host->ctx, header_len + aad_len);

	if (p == NULL)
		return k->host->error(k->host->ctx, ENVDB_ERR_NOMEM, NULL, "%s: out of memory",
				      op);
	memcpy(p, header, header_len);
	if (aad_len > 0)
		memcpy(p + header_len, aad, aad_len);
	*out = p;
	return ENVDB_OK;
}

static int check_inputs(kms *k, const char *op, const void *aad, size_t aad_len)
{
	if (aad == NULL && aad_len > 0)
		return k->host->error(k->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "%s: associated data is null but its length is %zu", op,
				      aad_len);
	return ENVDB_OK;
}

/* Seal `pt` under `key` into *ct and its id into *key_id. */
static int seal(kms *k, const char *op, kms_key *key, const void *pt, size_t pt_len,
		const void *aad, size_t aad_len, envdb_buffer *ct, envdb_buffer *key_id)
{
	char header[KMS_HEADER_MAX];
	unsigned char *raw = NULL, *ad = NULL;
	size_t header_len, raw_len, b64_len, id_len = strlen(key->id);
	int rc;

	if (pt_len > KMS_MAX_PLAINTEXT)
		return k->host->error(k->host->ctx, ENVDB_ERR_INVALID, NULL,
				      "%s: plaintext of %zu bytes is larger than %u", op, pt_len,
				      KMS_MAX_PLAINTEXT);
	header_len = (size_t)snprintf(header, sizeof(header), KMS_FORMAT ".%s.", key->id);
	raw_len = KMS_NONCE_BYTES + pt_len + KMS_TAG_BYTES;
	b64_len = sodium_base64_ENCODED_LEN(raw_len, KMS_B64) - 1;
	ct->len = header_len + b64_len;
	key_id->len = id_len;
	if (ct->data == NULL || ct->cap <= ct->len || key_id->data == NULL ||
	    key_id->cap <= id_len)
		return k->host->error(k->host->ctx, ENVDB_ERR_BUFFER_TOO_SMALL, NULL,
				      "%s: output buffer too small", op);

	raw = k->host->alloc(k->host->ctx, raw_len);
	if (raw == NULL) {
		rc = k->host->error(k->host->ctx, ENVDB_ERR_NOMEM, NULL, "%s: out of memory", op);
		goto done;
	}
	rc = full_aad(&ad, k, op, header, header_len, aad, aad_len);
	if (rc != ENVDB_OK)
		goto done;
	randombytes_buf(raw, KMS_NONCE_BYTES);
	kms_key_unlock(key);
	crypto_aead_xchacha20poly1305_ietf_encrypt(raw + KMS_NONCE_BYTES, NULL, pt, pt_len, ad,
						   header_len + aad_len, NULL, raw, key->key);
	kms_key_lock(key);
	memcpy(ct->data, header, header_len);
	sodium_bin2base64(ct->data + header_len, ct->cap - header_len, raw, raw_len, KMS_B64);
	envdb_buffer_set(key_id, key->id, id_len);
	rc = ENVDB_OK;
done:
	if (ad != NULL)
		k->host->free(k->host->ctx, ad);
	if (raw != NULL)
		k->host->free(k->host->ctx, raw);
	return rc;
}

/* Open `s` with `key` into `m` (at least raw_len - overhead + 1 bytes). */
static int unseal(kms *k, const char *op, const sealed *s, kms_key *key, const void *aad,
		  size_t aad_len, unsigned char *m, size_t *m_len)
{
	unsigned char *ad = NULL;
	unsigned long long len = 0;
	int rc;

	rc = full_aad(&ad, k, op, s->header, s->header_len, aad, aad_len);
	if (rc != ENVDB_OK)
		return rc;
	kms_key_unlock(key);
	rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
		m, &len, NULL, s->raw + KMS_NONCE_BYTES, s->raw_len - KMS_NONCE_BYTES, ad,
		s->header_len + aad_len, s->raw, key->key);
	kms_key_lock(key);
	k->host->free(k->host->ctx, ad);
	if (rc != 0)
		return k->host->error(k->host->ctx, ENVDB_ERR_INTEGRITY, NULL,
				      "%s: ciphertext under key %s does not authenticate (wrong "
				      "associated data, or the ciphertext or key was changed)",
				      op, s->id);
	m[len] = '\0';
	*m_len = (size_t)len;
	return ENVDB_OK;
}

int kms_encrypt(void *instance, const void *pt, size_t pt_len, const void *aad, size_t aad_len,
		envdb_buffer *ct, envdb_buffer *key_id)
{
	kms *k = instance;
	kms_key *key;
	int rc;

	if ((pt == NULL && pt_len > 0) || ct == NULL || key_id == NULL)
		return k->host->error(k->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "encrypt: missing plaintext or output buffer");
	rc = check_inputs(k, "encrypt", aad, aad_len);
	if (rc != ENVDB_OK)
		return rc;
	rc = kms_ring_current(&key, k, "encrypt");
	if (rc != ENVDB_OK)
		return rc;
	return seal(k, "encrypt", key, pt, pt_len, aad, aad_len, ct, key_id);
}

int kms_decrypt(void *instance, const char *ct, size_t ct_len, const void *aad, size_t aad_len,
		envdb_buffer *pt)
{
	kms *k = instance;
	kms_key *key;
	sealed s;
	size_t len;
	int rc;

	if (pt == NULL)
		return k->host->error(k->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "decrypt: no output buffer");
	rc = check_inputs(k, "decrypt", aad, aad_len);
	if (rc != ENVDB_OK)
		return rc;
	rc = sealed_parse(&s, k, "decrypt", ct, ct_len);
	if (rc != ENVDB_OK)
		return rc;
	rc = kms_ring_get(&key, k, s.id, "decrypt");
	if (rc != ENVDB_OK)
		goto done;
	/* Straight into the host's secure buffer: no other plaintext copy. */
	pt->len = s.raw_len - KMS_NONCE_BYTES - KMS_TAG_BYTES;
	if (pt->data == NULL || pt->cap <= pt->len) {
		rc = k->host->error(k->host->ctx, ENVDB_ERR_BUFFER_TOO_SMALL, NULL,
				    "decrypt: output buffer too small");
		goto done;
	}
	rc = unseal(k, "decrypt", &s, key, aad, aad_len, (unsigned char *)pt->data, &len);
done:
	sealed_clear(k, &s);
	return rc;
}

int kms_key_of(void *instance, const char *ct, size_t ct_len, envdb_buffer *key_id)
{
	kms *k = instance;
	sealed s;
	int rc;

	if (key_id == NULL)
		return k->host->error(k->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "key of: no output buffer");
	rc = sealed_parse(&s, k, "key of", ct, ct_len);
	if (rc != ENVDB_OK)
		return rc;
	sealed_clear(k, &s);
	rc = envdb_buffer_set_str(key_id, s.id);
	if (rc != ENVDB_OK)
		return k->host->error(k->host->ctx, rc, NULL, "key of: output buffer too small");
	return ENVDB_OK;
}

int kms_is_current(void *instance, const char *ct, size_t ct_len, int *is_current)
{
	char current[KMS_ID_MAX + 1] = "";
	kms *k = instance;
	sealed s;
	int rc;

	if (is_current == NULL)
		return k->host->error(k->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "is current: no output given");
	*is_current = 0;
	rc = sealed_parse(&s, k, "is current", ct, ct_len);
	if (rc != ENVDB_OK)
		return rc;
	sealed_clear(k, &s);
	/* A key of this keyring has one version: the key id decides. */
	rc = kms_ring_current_id(current, k, "is current");
	if (rc < 0)
		return rc;
	*is_current = rc == 1 && strcmp(current, s.id) == 0;
	return ENVDB_OK;
}

int kms_rewrap(void *instance, const char *ct, size_t ct_len, const void *aad, size_t aad_len,
	       envdb_buffer *out, envdb_buffer *key_id)
{
	kms *k = instance;
	kms_key *old, *cur;
	unsigned char *m = NULL;
	size_t m_len = 0;
	sealed s;
	int rc;

	if (out == NULL || key_id == NULL)
		return k->host->error(k->host->ctx, ENVDB_ERR_MISUSE, NULL,
				      "rewrap: no output buffer");
	rc = check_inputs(k, "rewrap", aad, aad_len);
	if (rc != ENVDB_OK)
		return rc;
	rc = sealed_parse(&s, k, "rewrap", ct, ct_len);
	if (rc != ENVDB_OK)
		return rc;
	rc = kms_ring_get(&old, k, s.id, "rewrap");
	if (rc != ENVDB_OK)
		goto done;
	rc = kms_ring_current(&cur, k, "rewrap");
	if (rc != ENVDB_OK)
		goto done;
	m = k->host->secure_alloc(k->host->ctx, s.raw_len - KMS_NONCE_BYTES - KMS_TAG_BYTES + 1);
	if (m == NULL) {
		rc = k->host->error(k->host->ctx, ENVDB_ERR_NOMEM, NULL,
				    "rewrap: out of secure memory");
		goto done;
	}
	rc = unseal(k, "rewrap", &s, old, aad, aad_len, m, &m_len);
	if (rc != ENVDB_OK)
		goto done;
	rc = seal(k, "rewrap", cur, m, m_len, aad, aad_len, out, key_id);
done:
	if (m != NULL)
		k->host->secure_free(k->host->ctx, m);
	sealed_clear(k, &s);
	return rc;
}
