/*
 * core/secmem.c — secure memory for secrets: libsodium guarded allocations
 * (locked, surrounded by guard pages, zeroed when freed) and the
 * envdbi_secret container built on them.
 */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "internal.h"

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

void *envdbi_secure_alloc(size_t size)
{
	if (envdbi_sodium_init() != ENVDB_OK)
		return NULL;
	/* sodium_malloc places the block against its trailing guard page, so
	 * the pointer is only as aligned as the size is: round up to the
	 * strictest fundamental alignment so any struct may live there.  Size
	 * 0 still gets a byte, so a NUL always fits. */
	const size_t align = 16;
	if (size > SIZE_MAX - align)
		return NULL;
	size = size == 0 ? align : (size + align - 1) & ~(align - 1);
	return sodium_malloc(size);
}

void envdbi_secure_free(void *ptr)
{
	if (ptr != NULL)
		sodium_free(ptr); /* zeroes before releasing */
}

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
