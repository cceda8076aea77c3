/*
 * core/secmem.c — secure memory for secrets: locked, guarded, wiped when
 * freed (libsodium guarded allocations), and the envdbi_secret container
 * built on it.
 *
 * A guarded allocation of its own (sodium_malloc) costs a mapping, two
 * mprotect and an mlock, and as many calls again to free it: about 25 us
 * on a virtual machine, more than the whole hot path it would serve (a
 * cached resolve allocates one block per call).  So small blocks come from
 * a pool:
 *  - chunks of CHUNK_BYTES, each ONE sodium_malloc (locked, a guard page
 *    on each side, a canary), are cut into slots of a size class (64 to
 *    4096 bytes in steps of 1.5 and 4/3, the 16-byte header included, and
 *    one of 4096 + 16: the secure output buffer every adapter call gets,
 *    ENVDB_ADAPTER_OUTPUT_MIN bytes, with its header);
 *  - a freed slot is wiped at once (sodium_memzero of every byte it was
 *    given) and kept on its class's free list; chunks are never unmapped
 *    (the pool only grows to the peak of secrets alive at once);
 *  - blocks larger than the largest class get a sodium_malloc of their
 *    own, as before.
 * Each thread keeps up to THREAD_CACHE wiped free slots per class of its
 * own, so that the alloc/free pair of a hot path takes no lock; they go
 * back to the shared lists when the thread ends.
 * Every block starts with a header that says which of the two it is and
 * how many bytes were asked for; a block that is freed twice, or that is
 * not ours, aborts (as sodium_free does on a canary mismatch).
 * Under AddressSanitizer and valgrind a slot is poisoned while free and
 * beyond the size asked for, so overflows and uses after free within the
 * pool are still caught.
 * Pointers are 16-byte aligned.  Thread-safe: one mutex per class, and
 * the per-thread caches.
 */
#include "config.h"

#include <stdatomic.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <envdb/adapter.h>

#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define SECMEM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SECMEM_ASAN 1
#endif
#endif
#ifdef SECMEM_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define VG_NOACCESS(p, n) VALGRIND_MAKE_MEM_NOACCESS((p), (n))
#define VG_UNDEFINED(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#endif
#endif
#ifndef VG_NOACCESS
#define VG_NOACCESS(p, n) ((void)(p), (void)(n))
#define VG_UNDEFINED(p, n) ((void)(p), (void)(n))
#endif

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_rc = -1;

static void sodium_setup(void)
{
	sodium_rc = sodium_init() < 0 ? -1 : 0;
}

int envdbi_sodium_init(void)
{
	pthread_once(&sodium_once, sodium_setup);
	if (sodium_rc != 0)
		return envdbi_error(ENVDB_ERR_GENERIC, NULL, "libsodium: initialisation failed");
	return ENVDB_OK;
}

/* ------------------------------------------------------------------------ */
/* The pool                                                                  */
/* ------------------------------------------------------------------------ */

#define ALIGN 16
#define CHUNK_BYTES (64 * 1024)
/* Slots of 64 to 4096 bytes in steps of 1.5 and 4/3 (the header
 * included), all multiples of ALIGN: at most a third of a slot is lost.
 * And one class for the adapters' secure output buffer
 * (ENVDB_ADAPTER_OUTPUT_MIN bytes, core/host.c hbuf_init): without it each
 * credential mint took a sodium_malloc of its own (26-35 us instead of
 * 0.1 us). */
#define N_CLASSES 14
#define MAX_SLOT (ENVDB_ADAPTER_OUTPUT_MIN + ALIGN)
static const size_t slot_size[N_CLASSES] = {64,  96,   128,  192,  256,  384,  512,
					     768, 1024, 1536, 2048, 3072, 4096, MAX_SLOT};
_Static_assert(ENVDB_ADAPTER_OUTPUT_MIN % ALIGN == 0 && ENVDB_ADAPTER_OUTPUT_MIN >= 4096,
	       "the output-buffer class comes last, and stays aligned");

/* Blocks that got a sodium_malloc of their own (the slow path). */
static _Atomic uint64_t own_allocs;

#define THREAD_CACHE 32

#define MAGIC_SLOT 0x5ec5107au  /* a pool slot in use */
#define MAGIC_FREE 0x5ec5f4eeu  /* a pool slot on a free list */
#define MAGIC_OWN 0x5ec50a11u   /* a block with its own sodium_malloc */

/* The 16 bytes in front of every block. */
typedef struct block_hdr {
	uint32_t magic;
	uint32_t cls;  /* size class of a slot */
	union {
		uint64_t size;           /* in use: bytes asked for (rounded to ALIGN) */
		struct block_hdr *next;  /* free: the next free slot of the class */
	} u;
} block_hdr;

typedef struct size_class {
	pthread_mutex_t lock;
	block_hdr *free_list;
	char *carve;       /* the rest of the newest chunk, not yet cut */
	size_t carve_left;
} size_class;

static size_class classes[N_CLASSES] = {
#define C { PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0 }
	C, C, C, C, C, C, C, C, C, C, C, C, C, C
#undef C
};

_Static_assert(sizeof(block_hdr) == ALIGN, "the header keeps blocks aligned");

/* The calling thread's free slots, wiped, linked through their headers. */
typedef struct thread_cache {
	block_hdr *head[N_CLASSES];
	unsigned n[N_CLASSES];
	bool registered; /* the destructor will return them */
} thread_cache;

static __thread thread_cache tcache;
static pthread_key_t tcache_key;
static pthread_once_t tcache_once = PTHREAD_ONCE_INIT;
static bool tcache_ok;

/* At thread exit: give the thread's free slots back to the shared lists. */
static void tcache_release(void *arg)
{
	thread_cache *t = arg;
	unsigned c;

	for (c = 0; c < N_CLASSES; c++) {
		pthread_mutex_lock(&classes[c].lock);
		while (t->head[c] != NULL) {
			block_hdr *h = t->head[c];

			t->head[c] = h->u.next;
			h->u.next = classes[c].free_list;
			classes[c].free_list = h;
		}
		t->n[c] = 0;
		pthread_mutex_unlock(&classes[c].lock);
	}
	t->registered = false;
}

static void tcache_setup(void)
{
	tcache_ok = pthread_key_create(&tcache_key, tcache_release) == 0;
}

/* The thread's cache, or NULL when it cannot be given back at thread exit
 * (then every slot goes through the shared lists). */
static thread_cache *tcache_get(void)
{
	thread_cache *t = &tcache;

	if (!t->registered) {
		pthread_once(&tcache_once, tcache_setup);
		if (!tcache_ok || pthread_setspecific(tcache_key, t) != 0)
			return NULL;
		t->registered = true;
	}
	return t;
}

static unsigned class_of(size_t total)
{
	unsigned c = 0;

	while (slot_size[c] < total)
		c++;
	return c;
}

/* A slot of class c, or NULL; called with the class lock held. */
static block_hdr *slot_take(size_class *k, unsigned c)
{
	const size_t slot = slot_size[c];
	block_hdr *h = k->free_list;

	if (h != NULL) {
		UNPOISON(h, sizeof(*h));
		k->free_list = h->u.next;
		return h;
	}
	if (k->carve_left < slot) {
		/* The rest of the old chunk (less than one slot) is lost. */
		char *chunk = sodium_malloc(CHUNK_BYTES);

		if (chunk == NULL)
			return NULL;
		POISON(chunk, CHUNK_BYTES);
		VG_NOACCESS(chunk, CHUNK_BYTES);
		k->carve = chunk;
		k->carve_left = CHUNK_BYTES;
	}
	h = (block_hdr *)k->carve;
	k->carve += slot;
	k->carve_left -= slot;
	UNPOISON(h, sizeof(*h));
	VG_UNDEFINED(h, sizeof(*h));
	return h;
}

void *envdbi_secure_alloc(size_t size)
{
	thread_cache *t;
	block_hdr *h;
	unsigned c;

	if (envdbi_sodium_init() != ENVDB_OK)
		return NULL;
	/* Size 0 still gets a block, so a NUL always fits. */
	if (size > SIZE_MAX - 2 * ALIGN)
		return NULL;
	size = size == 0 ? ALIGN : (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
	if (size + sizeof(block_hdr) > MAX_SLOT) {
		/* sodium_malloc places the block against its trailing guard
		 * page: a size that is a multiple of ALIGN keeps it aligned. */
		h = sodium_malloc(size + sizeof(block_hdr));
		if (h == NULL)
			return NULL;
		h->magic = MAGIC_OWN;
		h->cls = 0;
		h->u.size = size;
		atomic_fetch_add_explicit(&own_allocs, 1, memory_order_relaxed);
		return h + 1;
	}
	c = class_of(size + sizeof(block_hdr));
	t = tcache_get();
	if (t != NULL && t->head[c] != NULL) {
		h = t->head[c];
		t->head[c] = h->u.next;
		t->n[c]--;
	} else {
		pthread_mutex_lock(&classes[c].lock);
		h = slot_take(&classes[c], c);
		pthread_mutex_unlock(&classes[c].lock);
		if (h == NULL)
			return NULL;
	}
	h->magic = MAGIC_SLOT;
	h->cls = c;
	h->u.size = size;
	UNPOISON(h + 1, size);
	VG_UNDEFINED(h + 1, size);
	return h + 1;
}

void envdbi_secure_free(void *ptr)
{
	thread_cache *t;
	block_hdr *h;
	size_class *k;

	if (ptr == NULL)
		return;
	h = (block_hdr *)ptr - 1;
	if (h->magic == MAGIC_OWN) {
		h->magic = 0;
		sodium_free(h); /* wipes before releasing */
		return;
	}
	if (h->magic != MAGIC_SLOT || h->cls >= N_CLASSES ||
	    h->u.size + sizeof(*h) > slot_size[h->cls])
		abort(); /* freed twice, or not a secure block: memory is corrupt */
	sodium_memzero(ptr, (size_t)h->u.size);
	POISON(ptr, slot_size[h->cls] - sizeof(*h));
	VG_NOACCESS(ptr, slot_size[h->cls] - sizeof(*h));
	h->magic = MAGIC_FREE;
	t = tcache_get();
	if (t != NULL && t->n[h->cls] < THREAD_CACHE) {
		h->u.next = t->head[h->cls];
		t->head[h->cls] = h;
		t->n[h->cls]++;
		return;
	}
	k = &classes[h->cls];
	pthread_mutex_lock(&k->lock);
	h->u.next = k->free_list;
	k->free_list = h;
	pthread_mutex_unlock(&k->lock);
}

void envdbi_secure_get_stats(envdbi_secure_stats *out)
{
	out->own_allocs = atomic_load_explicit(&own_allocs, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* Secrets                                                                   */
/* ------------------------------------------------------------------------ */

envdbi_secret *envdbi_secret_new(const void *data, size_t len)
{
	envdbi_secret *s;

	if (len >= SIZE_MAX - 1)
		return NULL;
	s = envdbi_secure_alloc(sizeof(*s));
	if (s == NULL)
		return NULL;
	s->data = envdbi_secure_alloc(len + 1);
	if (s->data == NULL) {
		envdbi_secure_free(s);
		return NULL;
	}
	if (len > 0)
		memcpy(s->data, data, len);
	s->data[len] = '\0';
	s->len = len;
	return s;
}

void envdbi_secret_free(envdbi_secret *s)
{
	if (s == NULL)
		return;
	envdbi_secure_free(s->data);
	envdbi_secure_free(s);
}
