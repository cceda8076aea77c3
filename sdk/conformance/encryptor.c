/*
 * sdk/conformance/encryptor.c — the encryptor contract (envdb/encryptor.h):
 *
 *   current_key     non-empty, printable, stable; buffer protocol
 *   encrypt/decrypt round trip of binary plaintexts (1, 32, 1000 bytes);
 *                   ciphertexts printable without whitespace, sealed by the
 *                   current key, different every time, never containing
 *                   the plaintext; buffer protocol on both
 *   integrity       wrong associated data and every tampering are refused
 *                   (INTEGRITY, INVALID or NOT_FOUND, never the plaintext);
 *                   garbage is INVALID; an unknown key id is NOT_FOUND
 *   rewrap          re-seals under the current key with the same aad; a
 *                   wrong aad is INTEGRITY (CAP_REWRAP)
 *   keys            key_list names one current key; key_generate with and
 *                   without make_current; old ciphertexts still open and
 *                   rewrap moves them (CAP_KEY_MANAGE; --no-key-generate
 *                   leaves the key ring alone)
 *   concurrency     threads encrypting and decrypting
 *   deadline        REMOTE plugins stop at an expired deadline
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "kit.h"

typedef struct encryptor {
	const envdb_encryptor_ops *ops;
	void *inst;
	uint64_t caps;
	uint32_t flags;
} encryptor;

#define HAS(e, cap) (((e)->caps & (cap)) != 0)
#define MAX_CAP (1u << 22)

/* ------------------------------------------------------------------------ */
/* Wrappers                                                                  */
/* ------------------------------------------------------------------------ */

static const void *borrow_bytes(const void *p, size_t n)
{
	char *copy = kit_xmalloc(n + 1);

	memcpy(copy, p, n);
	copy[n] = '\0';
	kit_borrow_raw(copy, n + 1);
	return copy;
}

/* One text output: current_key, key_of, key_generate. */
typedef int (*text_op)(const encryptor *e, const void *arg, size_t arg_len, envdb_buffer *out);

static int op_current(const encryptor *e, const void *arg, size_t arg_len, envdb_buffer *out)
{
	return e->ops->current_key(e->inst, out);
}

static int op_key_of(const encryptor *e, const void *arg, size_t arg_len, envdb_buffer *out)
{
	return e->ops->key_of(e->inst, borrow_bytes(arg, arg_len), arg_len, out);
}

static int text_call(const encryptor *e, const char *op, text_op fn, const void *arg,
		     size_t arg_len, size_t cap, char **out, size_t *len, bool *untouched)
{
	kit_buf kb;
	int rc;

	kit_buf_init(&kb, cap, false);
	kit_call_begin(op);
	rc = fn(e, arg, arg_len, &kb.b);
	kit_call_end(op, rc);
	kit_buf_verify(&kb, rc, op, "key id", true);
	if (len != NULL)
		*len = kb.b.len;
	if (untouched != NULL)
		*untouched = kit_buf_untouched(&kb);
	if (rc == ENVDB_OK && out != NULL)
		*out = kit_xstrdup(kb.b.data);
	kit_buf_free(&kb);
	return rc;
}

static int text_full(const encryptor *e, const char *op, text_op fn, const void *arg,
		     size_t arg_len, char **out)
{
	size_t len = 0;
	int rc;

	*out = NULL;
	rc = text_call(e, op, fn, arg, arg_len, 256, out, &len, NULL);
	if (rc == ENVDB_ERR_BUFFER_TOO_SMALL && len >= 256 && len < MAX_CAP)
		rc = text_call(e, op, fn, arg, arg_len, len + 1, out, NULL, NULL);
	return rc;
}

static int current_key(const encryptor *e, char **out)
{
	return text_full(e, "current_key", op_current, NULL, 0, out);
}

static int key_of(const encryptor *e, const char *ct, char **out)
{
	return text_full(e, "key_of", op_key_of, ct, strlen(ct), out);
}

/* encrypt (rewrap when `rewrap`): ct and key id, retried when too small. */
static int seal(const encryptor *e, bool rewrap, const void *in, size_t in_len, const void *aad,
		size_t aad_len, size_t first_cap, char **ct, size_t *need, char **kid)
{
	const char *op = rewrap ? "rewrap" : "encrypt";
	size_t cap = first_cap, cap_k = 256;
	int attempt, rc = ENVDB_ERR_GENERIC;

	if (ct)
		*ct = NULL;
	if (kid)
		*kid = NULL;
	for (attempt = 0; attempt < 2; attempt++) {
		kit_buf out, k;
		const void *bin = borrow_bytes(in, in_len);
		const void *baad = borrow_bytes(aad, aad_len);

		kit_buf_init(&out, cap, false);
		kit_buf_init(&k, cap_k, false);
		kit_call_begin(op);
		if (rewrap)
			rc = e->ops->rewrap(e->inst, bin, in_len, baad, aad_len, &out.b, &k.b);
		else
			rc = e->ops->encrypt(e->inst, bin, in_len, baad, aad_len, &out.b, &k.b);
		kit_call_end(op, rc);
		kit_buf_verify(&out, rc, op, "ciphertext", true);
		kit_buf_verify(&k, rc, op, "key id", true);
		if (need != NULL)
			*need = out.b.len;
		if (rc == ENVDB_OK) {
			if (ct)
				*ct = kit_xstrdup(out.b.data);
			if (kid)
				*kid = kit_xstrdup(k.b.data);
		} else if (rc == ENVDB_ERR_BUFFER_TOO_SMALL) {
			if (out.b.len + 1 > cap)
				cap = out.b.len + 1;
			if (k.b.len + 1 > cap_k)
				cap_k = k.b.len + 1;
		}
		kit_buf_free(&out);
		kit_buf_free(&k);
		if (first_cap == 0 || rc != ENVDB_ERR_BUFFER_TOO_SMALL || cap > MAX_CAP ||
		    cap_k > MAX_CAP)
			break;
	}
	return rc;
}

static int encrypt(const encryptor *e, const void *pt, size_t pt_len, const void *aad,
		   size_t aad_len, char **ct, char **kid)
{
	return seal(e, false, pt, pt_len, aad, aad_len, 4096, ct, NULL, kid);
}

static int rewrap(const encryptor *e, const char *ct, const void *aad, size_t aad_len,
		  char **out, char **kid)
{
	return seal(e, true, ct, strlen(ct), aad, aad_len, 4096, out, NULL, kid);
}

/* decrypt into a secure buffer of `cap`; *pt (kit secure, len+1) on success.
 * *leaked is set when the output buffer holds `expect` although the call
 * failed. */
static int decrypt_cap(const encryptor *e, const char *ct, size_t ct_len, const void *aad,
		       size_t aad_len, size_t cap, char **pt, size_t *len, bool *untouched,
		       const void *expect, size_t expect_len, bool *leaked)
{
	kit_buf kb;
	int rc;
	const char *bct = borrow_bytes(ct, ct_len);
	const void *baad = borrow_bytes(aad, aad_len);

	kit_buf_init(&kb, cap, true);
	kit_call_begin("decrypt");
	rc = e->ops->decrypt(e->inst, bct, ct_len, baad, aad_len, &kb.b);
	kit_call_end("decrypt", rc);
	kit_buf_verify(&kb, rc, "decrypt", "plaintext", false);
	if (len != NULL)
		*len = kb.b.len;
	if (untouched != NULL)
		*untouched = kit_buf_untouched(&kb);
	if (leaked != NULL)
		*leaked = rc != ENVDB_OK && expect != NULL && kb.orig != NULL && expect_len > 0 &&
			  memmem(kb.orig, kb.cap, expect, expect_len) != NULL;
	if (rc == ENVDB_OK && pt != NULL) {
		*pt = kit_smalloc(kb.b.len + 1);
		memcpy(*pt, kb.b.data, kb.b.len);
	}
	kit_buf_free(&kb);
	return rc;
}

static int decrypt(const encryptor *e, const char *ct, const void *aad, size_t aad_len,
		   char **pt, size_t *len)
{
	size_t need = 0;
	int rc;

	*pt = NULL;
	rc = decrypt_cap(e, ct, strlen(ct), aad, aad_len, 4096, pt, &need, NULL, NULL, 0, NULL);
	if (rc == ENVDB_ERR_BUFFER_TOO_SMALL && need >= 4096 && need < MAX_CAP)
		rc = decrypt_cap(e, ct, strlen(ct), aad, aad_len, need + 1, pt, &need, NULL, NULL, 0,
				 NULL);
	if (len != NULL)
		*len = need;
	return rc;
}

typedef struct key_entry {
	char *id;
	int is_current;
} key_entry;

typedef struct key_set {
	key_entry *v;
	size_t n, cap;
} key_set;

static int collect_key(void *ctx, const char *key_id, int is_current, int64_t created_at)
{
	key_set *s = ctx;

	if (key_id == NULL) {
		kit_finding(KIT_BUFFERS, "key_list called its callback with a NULL key id");
		return 0;
	}
	if (s->n == s->cap) {
		key_entry *v;
		s->cap = s->cap ? s->cap * 2 : 16;
		v = realloc(s->v, s->cap * sizeof(*v));
		if (v == NULL)
			return ENVDB_ERR_NOMEM;
		s->v = v;
	}
	s->v[s->n].id = kit_xstrdup(key_id);
	s->v[s->n].is_current = is_current;
	s->n++;
	return 0;
}

static void key_set_clear(key_set *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->v[i].id);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static int key_list(const encryptor *e, key_set *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	kit_call_begin("key_list");
	rc = e->ops->key_list(e->inst, collect_key, out);
	return kit_call_end("key_list", rc);
}

static const key_entry *key_find(const key_set *s, const char *id)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (strcmp(s->v[i].id, id) == 0)
			return &s->v[i];
	return NULL;
}

static int key_generate(const encryptor *e, int make_current, char **kid)
{
	kit_buf kb;
	int rc;

	*kid = NULL;
	kit_buf_init(&kb, 256, false);
	kit_call_begin("key_generate");
	rc = e->ops->key_generate(e->inst, make_current, &kb.b);
	kit_call_end("key_generate", rc);
	kit_buf_verify(&kb, rc, "key_generate", "key id", true);
	if (rc == ENVDB_OK)
		*kid = kit_xstrdup(kb.b.data);
	kit_buf_free(&kb);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                    */
/* ------------------------------------------------------------------------ */

static bool printable_token(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static bool accepted_refusal(int rc)
{
	return rc == ENVDB_ERR_INTEGRITY || rc == ENVDB_ERR_INVALID || rc == ENVDB_ERR_NOT_FOUND;
}

/* A different character of the same class, so that the format stays
 * plausible and only the content changes. */
static char flip(char c)
{
	if (c >= '0' && c <= '9')
		return c == '9' ? '0' : (char)(c + 1);
	if (c >= 'a' && c <= 'z')
		return c == 'z' ? 'a' : (char)(c + 1);
	if (c >= 'A' && c <= 'Z')
		return c == 'Z' ? 'A' : (char)(c + 1);
	return 'A';
}

static void check_tampering(const encryptor *e, const char *ct, const void *aad,
			    size_t aad_len, const unsigned char *pt, size_t pt_len)
{
	size_t n = strlen(ct), step, pos, tried = 0;
	char *bad = kit_xstrdup(ct);
	char detail[512] = "";
	bool leaked = false;
	int rc;

	step = n / 24 ? n / 24 : 1;
	for (pos = 0; pos < n && detail[0] == '\0'; pos = (pos + step < n || pos == n - 1)
								 ? pos + step
								 : n - 1) {
		char orig = bad[pos];

		bad[pos] = flip(orig);
		rc = decrypt_cap(e, bad, n, aad, aad_len, 4096, NULL, NULL, NULL, pt, pt_len,
				 &leaked);
		tried++;
		if (!accepted_refusal(rc) || leaked)
			snprintf(detail, sizeof(detail), "character %zu changed ('%c' to '%c'): %s%s",
				 pos, orig, bad[pos], kit_why(rc),
				 leaked ? ", and the plaintext was written to the output" : "");
		bad[pos] = orig;
		if (pos == n - 1)
			break;
	}
	kit_check(detail[0] == '\0', "decrypt: every tampered ciphertext is refused", "%s",
		  detail);

	/* Truncation, and the ciphertext with a character appended. */
	detail[0] = '\0';
	rc = decrypt_cap(e, ct, n / 2, aad, aad_len, 4096, NULL, NULL, NULL, pt, pt_len, &leaked);
	if (!accepted_refusal(rc) || leaked)
		snprintf(detail, sizeof(detail), "cut to %zu characters: %s", n / 2, kit_why(rc));
	if (detail[0] == '\0') {
		rc = decrypt_cap(e, ct, n - 1, aad, aad_len, 4096, NULL, NULL, NULL, pt, pt_len,
				 &leaked);
		if (!accepted_refusal(rc) || leaked)
			snprintf(detail, sizeof(detail), "last character cut: %s", kit_why(rc));
	}
	if (detail[0] == '\0') {
		char *longer = kit_xmalloc(n + 2);

		memcpy(longer, ct, n);
		longer[n] = 'A';
		longer[n + 1] = '\0';
		rc = decrypt_cap(e, longer, n + 1, aad, aad_len, 4096, NULL, NULL, NULL, pt, pt_len,
				 &leaked);
		if (!accepted_refusal(rc) || leaked)
			snprintf(detail, sizeof(detail), "one character appended: %s", kit_why(rc));
		free(longer);
	}
	kit_check(detail[0] == '\0', "decrypt: a truncated or extended ciphertext is refused",
		  "%s", detail);
	free(bad);
}

/* Replace the key id inside the ciphertext by one that does not exist. */
static void check_unknown_key(const encryptor *e, const char *ct, const char *kid,
			      const void *aad, size_t aad_len)
{
	const char *name = "decrypt: an unknown key id is NOT_FOUND";
	char *bad, *at, *other = NULL;
	size_t klen = strlen(kid);
	int rc;

	at = klen > 0 ? strstr(ct, kid) : NULL;
	if (at == NULL) {
		kit_skip(name, "the key id does not appear literally in the ciphertext");
		return;
	}
	bad = kit_xstrdup(ct);
	bad[(at - ct) + klen - 1] = flip(bad[(at - ct) + klen - 1]);
	rc = decrypt_cap(e, bad, strlen(bad), aad, aad_len, 4096, NULL, NULL, NULL, NULL, 0, NULL);
	kit_check(rc == ENVDB_ERR_NOT_FOUND, name, "%s", kit_why(rc));
	rc = key_of(e, bad, &other);
	kit_check(rc == ENVDB_OK || rc == ENVDB_ERR_NOT_FOUND,
		  "key_of: answers for an unknown key id without opening", "%s", kit_why(rc));
	free(other);
	free(bad);
}

static void check_keys(const encryptor *e, const kit_options *opt, const char *old_ct,
		       const char *old_kid, const void *aad, size_t aad_len,
		       const unsigned char *pt, size_t pt_len)
{
	key_set ks;
	char *nc = NULL, *nk = NULL, *cur = NULL, *ct2 = NULL, *kid2 = NULL, *out = NULL,
	     *koo = NULL;
	size_t i, n_current = 0, out_len = 0;
	const key_entry *ke;
	int rc;

	if (!HAS(e, ENVDB_ENCRYPTOR_CAP_KEY_MANAGE)) {
		kit_skip("key_list", "CAP_KEY_MANAGE not declared");
		return;
	}
	rc = key_list(e, &ks);
	for (i = 0; i < ks.n; i++)
		n_current += ks.v[i].is_current ? 1 : 0;
	ke = key_find(&ks, old_kid);
	kit_check(rc == ENVDB_OK && n_current == 1 && ke != NULL && ke->is_current,
		  "key_list: exactly one current key, the one current_key names",
		  "%s; %zu keys, %zu current, '%s' %s", kit_why(rc), ks.n, n_current, old_kid,
		  ke ? (ke->is_current ? "current" : "listed, not current") : "not listed");
	key_set_clear(&ks);
	if (!opt->key_generate) {
		kit_skip("key_generate", "disabled (--no-key-generate)");
		return;
	}

	rc = key_generate(e, 0, &nc);
	if (kit_check(rc == ENVDB_OK && printable_token(nc), "key_generate: a new key, not current",
		      "%s", rc == ENVDB_OK ? "the key id is not printable" : kit_why(rc))) {
		rc = current_key(e, &cur);
		kit_check(rc == ENVDB_OK && strcmp(cur, old_kid) == 0 && strcmp(nc, old_kid) != 0,
			  "key_generate: without make_current the current key stays",
			  "current is '%s', was '%s', new '%s'", cur ? cur : kit_why(rc), old_kid, nc);
		free(cur);
		cur = NULL;
	}
	rc = key_generate(e, 1, &nk);
	if (!kit_check(rc == ENVDB_OK && printable_token(nk) && strcmp(nk, old_kid) != 0,
		       "key_generate: make_current", "%s",
		       rc == ENVDB_OK ? "the new key id is empty or the old one" : kit_why(rc)))
		goto out;
	rc = current_key(e, &cur);
	kit_check(rc == ENVDB_OK && strcmp(cur, nk) == 0, "key_generate: the new key is current",
		  "current_key says '%s', the new key is '%s'", cur ? cur : kit_why(rc), nk);
	rc = key_list(e, &ks);
	kit_check(rc == ENVDB_OK && key_find(&ks, old_kid) && key_find(&ks, nk) &&
			  key_find(&ks, nk)->is_current && !key_find(&ks, old_kid)->is_current,
		  "key_list: the old key listed, the new one current", "%s", kit_why(rc));
	key_set_clear(&ks);

	rc = decrypt(e, old_ct, aad, aad_len, &out, &out_len);
	kit_check(rc == ENVDB_OK && out_len == pt_len && memcmp(out, pt, pt_len) == 0,
		  "decrypt: a ciphertext of the previous key still opens", "%s", kit_why(rc));
	kit_sfree(out, out_len + 1);
	out = NULL;
	rc = key_of(e, old_ct, &koo);
	kit_check(rc == ENVDB_OK && strcmp(koo, old_kid) == 0,
		  "key_of: still names the previous key", "'%s', expected '%s'",
		  koo ? koo : kit_why(rc), old_kid);

	if (HAS(e, ENVDB_ENCRYPTOR_CAP_REWRAP)) {
		rc = rewrap(e, old_ct, aad, aad_len, &ct2, &kid2);
		if (kit_check(rc == ENVDB_OK && strcmp(kid2, nk) == 0,
			      "rewrap: moves a ciphertext to the new current key",
			      "%s; key '%s', expected '%s'", kit_why(rc), kid2 ? kid2 : "", nk)) {
			rc = decrypt(e, ct2, aad, aad_len, &out, &out_len);
			kit_check(rc == ENVDB_OK && out_len == pt_len && memcmp(out, pt, pt_len) == 0,
				  "rewrap: the moved ciphertext opens to the same plaintext", "%s",
				  kit_why(rc));
		}
	}
	free(kid2);
	kid2 = NULL;
	free(ct2);
	ct2 = NULL;
	rc = encrypt(e, pt, pt_len, aad, aad_len, &ct2, &kid2);
	kit_check(rc == ENVDB_OK && strcmp(kid2, nk) == 0, "encrypt: seals with the new current key",
		  "%s; key '%s'", kit_why(rc), kid2 ? kid2 : "");
out:
	kit_sfree(out, out_len + 1);
	free(nc);
	free(nk);
	free(cur);
	free(ct2);
	free(kid2);
	free(koo);
}

/* ------------------------------------------------------------------------ */
/* Concurrency and deadline                                                  */
/* ------------------------------------------------------------------------ */

typedef struct conc {
	const encryptor *e;
	int iterations;
	pthread_mutex_t lock;
	pthread_barrier_t barrier;
	unsigned failures;
	char first[1024];
} conc;

static void conc_fail(conc *c, int i, const char *what, int rc)
{
	pthread_mutex_lock(&c->lock);
	if (c->failures++ == 0)
		snprintf(c->first, sizeof(c->first), "cycle %d: %s: %s", i, what, kit_why(rc));
	pthread_mutex_unlock(&c->lock);
}

static void *worker(void *arg)
{
	conc *c = arg;
	int i, rc;

	pthread_barrier_wait(&c->barrier);
	for (i = 0; i < c->iterations; i++) {
		unsigned char pt[48];
		char aad[80], id[37], *ct = NULL, *kid = NULL, *out = NULL, *k2 = NULL;
		size_t len = 0;

		randombytes_buf(pt, sizeof(pt));
		kit_secret_add(pt, sizeof(pt), "a plaintext given to encrypt");
		kit_uuid(id);
		snprintf(aad, sizeof(aad), "credential:%s", id);
		rc = encrypt(c->e, pt, sizeof(pt), aad, strlen(aad), &ct, &kid);
		if (rc != ENVDB_OK) {
			conc_fail(c, i, "encrypt", rc);
			continue;
		}
		rc = decrypt(c->e, ct, aad, strlen(aad), &out, &len);
		if (rc != ENVDB_OK || len != sizeof(pt) || memcmp(out, pt, len) != 0)
			conc_fail(c, i, "decrypt (round trip)", rc);
		rc = key_of(c->e, ct, &k2);
		if (rc != ENVDB_OK || strcmp(k2, kid) != 0)
			conc_fail(c, i, "key_of", rc);
		kit_sfree(out, len + 1);
		free(ct);
		free(kid);
		free(k2);
	}
	return NULL;
}

static void check_concurrency(const encryptor *e, const kit_options *opt)
{
	bool ts = (e->flags & ENVDB_PLUGIN_THREAD_SAFE) != 0;
	pthread_t *t = kit_xmalloc((size_t)opt->threads * sizeof(*t));
	char name[160];
	conc c;
	int i;

	memset(&c, 0, sizeof(c));
	c.e = e;
	c.iterations = opt->iterations * 4;
	pthread_mutex_init(&c.lock, NULL);
	pthread_barrier_init(&c.barrier, NULL, (unsigned)opt->threads);
	for (i = 0; i < opt->threads; i++)
		if (pthread_create(&t[i], NULL, worker, &c) != 0) {
			fprintf(stderr, "envdb-conformance: cannot start a thread\n");
			abort();
		}
	for (i = 0; i < opt->threads; i++)
		pthread_join(t[i], NULL);
	snprintf(name, sizeof(name), "concurrency: %d threads x %d encrypt/decrypt/key_of (%s)",
		 opt->threads, c.iterations,
		 ts ? "THREAD_SAFE: concurrent calls" : "calls serialized by the host");
	kit_check(c.failures == 0, name, "%u failure(s); first: %s", c.failures, c.first);
	pthread_barrier_destroy(&c.barrier);
	pthread_mutex_destroy(&c.lock);
	free(t);
}

static void check_deadline(const encryptor *e, const kit_options *opt)
{
	struct timespec pause = { 0, 20 * 1000 * 1000 };
	unsigned char pt[32];
	char *ct = NULL, *kid = NULL;
	int64_t t0, took;
	int rc;

	if (!(e->flags & ENVDB_PLUGIN_REMOTE)) {
		kit_skip("deadline", "not a REMOTE plugin");
		return;
	}
	if (!opt->deadline) {
		kit_skip("deadline", "disabled (--no-deadline)");
		return;
	}
	randombytes_buf(pt, sizeof(pt));
	kit_set_deadline(kit_now_ms());
	nanosleep(&pause, NULL);
	t0 = kit_now_ms();
	rc = encrypt(e, pt, sizeof(pt), "aad", 3, &ct, &kid);
	took = kit_now_ms() - t0;
	kit_set_deadline(0);
	kit_check((rc == ENVDB_ERR_TIMEOUT || rc == ENVDB_ERR_UNAVAILABLE) && took < 5000,
		  "deadline: encrypt with an expired deadline stops with TIMEOUT",
		  "%s after %lld ms", kit_why(rc), (long long)took);
	free(ct);
	free(kid);
}

/* ------------------------------------------------------------------------ */

void kit_run_encryptor(const envdb_plugin_descriptor *desc, const envdb_encryptor_ops *ops,
		       void *instance, const kit_options *opt)
{
	static const size_t sizes[] = { 1, 32, 1000 };
	encryptor e = { ops, instance, ops->capabilities, desc->flags };
	char *cur = NULL, *cur2 = NULL, *ct = NULL, *ct_b = NULL, *kid = NULL, *kid_b = NULL,
	     *kof = NULL, *out = NULL, *ct2 = NULL, *kid2 = NULL;
	char aad[96], id1[37], id2[37], detail[512] = "";
	unsigned char *pt = NULL;
	size_t i, klen = 0, need = 0, out_len = 0, pt_len = 32;
	bool untouched = false, leaked = false;
	int rc, rc0, rc1;

	/* current_key; an empty key ring first gets its first key. */
	rc = current_key(&e, &cur);
	if (rc != ENVDB_OK && HAS(&e, ENVDB_ENCRYPTOR_CAP_KEY_MANAGE) && opt->key_generate) {
		char *first = NULL;

		kit_note("current_key: %s; generating a first key", kit_why(rc));
		rc = key_generate(&e, 1, &first);
		kit_check(rc == ENVDB_OK, "key_generate: the first key of an empty key ring", "%s",
			  kit_why(rc));
		free(first);
		rc = current_key(&e, &cur);
	}
	if (!kit_check(rc == ENVDB_OK && printable_token(cur), "current_key", "%s",
		       rc == ENVDB_OK ? "empty or not printable" : kit_why(rc)))
		goto out;
	rc = current_key(&e, &cur2);
	kit_check(rc == ENVDB_OK && strcmp(cur, cur2) == 0, "current_key: stable",
		  "'%s' then '%s'", cur, cur2 ? cur2 : kit_why(rc));
	klen = strlen(cur);
	rc0 = text_call(&e, "current_key", op_current, NULL, 0, 0, NULL, &need, NULL);
	if (rc0 != ENVDB_ERR_BUFFER_TOO_SMALL || need != klen)
		kit_fail("current_key: buffer protocol", "with cap 0: %s and len %zu, expected "
			 "ENVDB_ERR_BUFFER_TOO_SMALL and len %zu", kit_status_name(rc0), need, klen);
	else {
		rc1 = text_call(&e, "current_key", op_current, NULL, 0, klen, NULL, &need,
				&untouched);
		kit_check(rc1 == ENVDB_ERR_BUFFER_TOO_SMALL && need == klen && untouched,
			  "current_key: buffer protocol", "with cap %zu (no room for the NUL): %s, "
			  "len %zu, buffer %s", klen, kit_status_name(rc1), need,
			  untouched ? "untouched" : "written");
	}

	/* Round trips. */
	kit_uuid(id1);
	kit_uuid(id2);
	snprintf(aad, sizeof(aad), "%s|%s", id1, id2);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]) && detail[0] == '\0'; i++) {
		unsigned char *p = kit_smalloc(sizes[i]);
		char *c = NULL, *k = NULL, *o = NULL;
		size_t ol = 0;

		randombytes_buf(p, sizes[i]);
		if (sizes[i] > 2)
			p[1] = 0; /* binary: a NUL inside */
		kit_secret_add(p, sizes[i], "a plaintext given to encrypt");
		rc = encrypt(&e, p, sizes[i], aad, strlen(aad), &c, &k);
		if (rc != ENVDB_OK)
			snprintf(detail, sizeof(detail), "encrypt of %zu bytes: %s", sizes[i],
				 kit_why(rc));
		else if (!printable_token(c))
			snprintf(detail, sizeof(detail), "the ciphertext of %zu bytes is not "
				 "printable ASCII without whitespace", sizes[i]);
		else if (strcmp(k, cur) != 0)
			snprintf(detail, sizeof(detail), "encrypt says key '%s', current_key says "
				 "'%s'", k, cur);
		else if (kit_secret_find(c, strlen(c)) != NULL)
			snprintf(detail, sizeof(detail), "the ciphertext contains the plaintext");
		else if ((rc = decrypt(&e, c, aad, strlen(aad), &o, &ol)) != ENVDB_OK)
			snprintf(detail, sizeof(detail), "decrypt of %zu bytes: %s", sizes[i],
				 kit_why(rc));
		else if (ol != sizes[i] || memcmp(o, p, ol) != 0)
			snprintf(detail, sizeof(detail), "decrypt of %zu bytes gave %zu different "
				 "bytes", sizes[i], ol);
		if (sizes[i] == pt_len && detail[0] == '\0') {
			pt = p;
			ct = c;
			kid = k;
			p = NULL;
			c = k = NULL;
		}
		kit_sfree(p, sizes[i]);
		kit_sfree(o, ol + 1);
		free(c);
		free(k);
	}
	if (!kit_check(detail[0] == '\0' && pt != NULL,
		       "encrypt/decrypt: round trip of binary plaintexts (1, 32, 1000 bytes)", "%s",
		       detail))
		goto out;

	rc = encrypt(&e, pt, pt_len, aad, strlen(aad), &ct_b, &kid_b);
	kit_check(rc == ENVDB_OK && strcmp(ct, ct_b) != 0,
		  "encrypt: the same plaintext twice gives different ciphertexts", "%s",
		  rc == ENVDB_OK ? "identical ciphertexts (a fixed nonce?)" : kit_why(rc));
	rc = key_of(&e, ct, &kof);
	kit_check(rc == ENVDB_OK && strcmp(kof, kid) == 0, "key_of: names the sealing key",
		  "'%s', expected '%s'", kof ? kof : kit_why(rc), kid);

	/* Buffer protocol of encrypt and decrypt. */
	rc0 = seal(&e, false, pt, pt_len, aad, strlen(aad), 0, NULL, &need, NULL);
	rc1 = rc0 == ENVDB_ERR_BUFFER_TOO_SMALL && need > 0
		      ? seal(&e, false, pt, pt_len, aad, strlen(aad), need + 1, NULL, NULL, NULL)
		      : rc0;
	kit_check(rc0 == ENVDB_ERR_BUFFER_TOO_SMALL && need > 0 && rc1 == ENVDB_OK,
		  "encrypt: buffer protocol (size query, then the reported size)",
		  "size query: %s with len %zu; then: %s", kit_status_name(rc0), need,
		  kit_status_name(rc1));
	rc0 = decrypt_cap(&e, ct, strlen(ct), aad, strlen(aad), pt_len, NULL, &need, &untouched,
			  NULL, 0, NULL);
	kit_check(rc0 == ENVDB_ERR_BUFFER_TOO_SMALL && need == pt_len && untouched,
		  "decrypt: buffer protocol (no room for the NUL: nothing written)",
		  "%s, len %zu (expected %zu), buffer %s", kit_status_name(rc0), need, pt_len,
		  untouched ? "untouched" : "written");

	/* Integrity. */
	{
		char wrong[96];

		snprintf(wrong, sizeof(wrong), "%s", aad);
		wrong[0] = flip(wrong[0]);
		rc0 = decrypt_cap(&e, ct, strlen(ct), wrong, strlen(wrong), 4096, NULL, NULL, NULL,
				  pt, pt_len, &leaked);
		rc1 = decrypt_cap(&e, ct, strlen(ct), "", 0, 4096, NULL, NULL, NULL, pt, pt_len,
				  &leaked);
		kit_check(rc0 == ENVDB_ERR_INTEGRITY && rc1 == ENVDB_ERR_INTEGRITY && !leaked,
			  "decrypt: wrong associated data is INTEGRITY",
			  "with another row's aad: %s; with empty aad: %s%s", kit_status_name(rc0),
			  kit_status_name(rc1),
			  leaked ? "; the plaintext was written to the output" : "");
	}
	check_tampering(&e, ct, aad, strlen(aad), pt, pt_len);
	rc0 = decrypt_cap(&e, "not-a-ciphertext", 16, aad, strlen(aad), 4096, NULL, NULL, NULL,
			  NULL, 0, NULL);
	rc1 = key_of(&e, "not-a-ciphertext", &kid2);
	kit_check(rc0 == ENVDB_ERR_INVALID && rc1 == ENVDB_ERR_INVALID,
		  "decrypt and key_of: a malformed ciphertext is INVALID", "decrypt: %s; key_of: %s",
		  kit_status_name(rc0), kit_status_name(rc1));
	free(kid2);
	kid2 = NULL;
	check_unknown_key(&e, ct, kid, aad, strlen(aad));

	/* Rewrap. */
	if (HAS(&e, ENVDB_ENCRYPTOR_CAP_REWRAP)) {
		char wrong[96];

		rc = rewrap(&e, ct, aad, strlen(aad), &ct2, &kid2);
		if (kit_check(rc == ENVDB_OK && strcmp(kid2, cur) == 0 && strcmp(ct2, ct) != 0,
			      "rewrap: re-seals under the current key", "%s%s", kit_why(rc),
			      rc == ENVDB_OK ? " (same ciphertext, or not the current key)" : "")) {
			rc = decrypt(&e, ct2, aad, strlen(aad), &out, &out_len);
			kit_check(rc == ENVDB_OK && out_len == pt_len && memcmp(out, pt, pt_len) == 0,
				  "rewrap: opens to the same plaintext with the same aad", "%s",
				  kit_why(rc));
			kit_sfree(out, out_len + 1);
			out = NULL;
		}
		snprintf(wrong, sizeof(wrong), "%s", aad);
		wrong[0] = flip(wrong[0]);
		free(ct2);
		free(kid2);
		ct2 = kid2 = NULL;
		rc = rewrap(&e, ct, wrong, strlen(wrong), &ct2, &kid2);
		kit_check(rc == ENVDB_ERR_INTEGRITY, "rewrap: wrong associated data is INTEGRITY",
			  "%s", kit_why(rc));
	} else {
		kit_skip("rewrap", "CAP_REWRAP not declared");
	}

	check_keys(&e, opt, ct, kid, aad, strlen(aad), pt, pt_len);
	check_concurrency(&e, opt);
	check_deadline(&e, opt);
out:
	kit_sfree(pt, pt_len);
	free(cur);
	free(cur2);
	free(ct);
	free(ct_b);
	free(kid);
	free(kid_b);
	free(kof);
	free(ct2);
	free(kid2);
}
