/*
 * core/secmem.c — secure memory for secrets: libsodium guarded allocations
 * (locked, surrounded by guard pages, zeroed when freed) and the
 * envdbi_secret container built on them.
 */
#include "config.h"

#include <pthread.h>
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
	/* sodium_malloc(0) is valid but returns a guarded zero-size area;
	 * give callers at least one byte so a NUL always fits. */
	return sodium_malloc(size == 0 ? 1 : size);
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
