/*
 * tests/test_secmem.c — secure memory (core/secmem.c): the pool of small
 * blocks and the blocks of their own behind envdbi_secure_alloc(): sizes
 * and alignment, every byte usable, wiped when freed, no two live blocks
 * overlapping (also across threads, and after threads that cached free
 * blocks have ended), and an abort on a double free.
 */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <envdb/adapter.h>

#include "internal.h"

/* Under valgrind a freshly allocated block is undefined by design: do not
 * read it before writing it. */
static int under_valgrind(void)
{
	const char *v = getenv("ENVDB_VALGRIND");

	return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

START_TEST(test_sizes_and_alignment)
{
	static const size_t sizes[] = {0,    1,    15,   16,   17,   48,   49,    112,
				       113,  500,  1008, 1009, 2032, 4064, 4080,  4081,
				       8192, 65536, 100000};
	void *p[sizeof(sizes) / sizeof(sizes[0])];
	size_t i, j;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		p[i] = envdbi_secure_alloc(sizes[i]);
		ck_assert_ptr_nonnull(p[i]);
		ck_assert_uint_eq((uintptr_t)p[i] % 16, 0);
		/* Every byte asked for (and one for size 0) is ours. */
		memset(p[i], (int)(0x40 + i), sizes[i] ? sizes[i] : 1);
	}
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (j = 0; j < (sizes[i] ? sizes[i] : 1); j++)
			ck_assert_int_eq(((unsigned char *)p[i])[j], 0x40 + i);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		envdbi_secure_free(p[i]);
	envdbi_secure_free(NULL);
}
END_TEST

/* Issue 18: the adapters' secure output buffer (ENVDB_ADAPTER_OUTPUT_MIN,
 * 4096 bytes: every mint) comes from the pool; it took a sodium_malloc of
 * its own, since 4096 + the header did not fit the largest slot. */
START_TEST(test_output_buffer_pooled)
{
	envdbi_secure_stats st0, st1;
	void *p, *q;

	envdbi_secure_get_stats(&st0);
	p = envdbi_secure_alloc(ENVDB_ADAPTER_OUTPUT_MIN);
	ck_assert_ptr_nonnull(p);
	memset(p, 0x5a, ENVDB_ADAPTER_OUTPUT_MIN);
	envdbi_secure_free(p);
	q = envdbi_secure_alloc(4096);
	ck_assert_ptr_eq(q, p); /* the same slot, back from the thread's cache */
	envdbi_secure_free(q);
	envdbi_secure_get_stats(&st1);
	ck_assert_uint_eq(st1.own_allocs, st0.own_allocs);
	/* Past the largest class: a guarded allocation of its own. */
	p = envdbi_secure_alloc(ENVDB_ADAPTER_OUTPUT_MIN + 1);
	ck_assert_ptr_nonnull(p);
	envdbi_secure_get_stats(&st1);
	ck_assert_uint_eq(st1.own_allocs, st0.own_allocs + 1);
	envdbi_secure_free(p);
}
END_TEST

START_TEST(test_wiped_and_reused)
{
	unsigned char *a, *b;
	size_t i;

	a = envdbi_secure_alloc(200);
	ck_assert_ptr_nonnull(a);
	memset(a, 0xA5, 200);
	envdbi_secure_free(a);
	/* The same size class gives the slot just freed back, wiped. */
	b = envdbi_secure_alloc(180);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_eq(a, b);
	if (!under_valgrind())
		for (i = 0; i < 180; i++)
			ck_assert_int_eq(b[i], 0);
	envdbi_secure_free(b);
}
END_TEST

START_TEST(test_secret)
{
	envdbi_secret *s = envdbi_secret_new("token-1234", 10), *e = envdbi_secret_new("", 0);

	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(s->len, 10);
	ck_assert_str_eq(s->data, "token-1234");
	ck_assert_uint_eq(e->len, 0);
	ck_assert_str_eq(e->data, "");
	envdbi_secret_free(s);
	envdbi_secret_free(e);
	envdbi_secret_free(NULL);
}
END_TEST

#define THREADS 4
#define ROUNDS 20000
#define LIVE 64

/* Each thread keeps LIVE blocks of random sizes, each filled with a pattern
 * of its own, checks the pattern before freeing: a block handed out twice,
 * or overlapping another, breaks some pattern. */
static void *churn(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	unsigned char *blk[LIVE] = {0};
	size_t len[LIVE] = {0}, i, j;
	unsigned char tag[LIVE];
	int bad = 0;

	for (i = 0; i < ROUNDS && !bad; i++) {
		size_t k = rand_r(&seed) % LIVE;

		if (blk[k] != NULL) {
			for (j = 0; j < len[k]; j++)
				if (blk[k][j] != tag[k])
					bad = 1;
			envdbi_secure_free(blk[k]);
		}
		len[k] = 1 + rand_r(&seed) % (rand_r(&seed) % 8 == 0 ? 6000 : 600);
		tag[k] = (unsigned char)(1 + rand_r(&seed) % 254);
		blk[k] = envdbi_secure_alloc(len[k]);
		if (blk[k] == NULL) {
			bad = 1;
			break;
		}
		memset(blk[k], tag[k], len[k]);
	}
	for (i = 0; i < LIVE; i++) {
		if (blk[i] == NULL)
			continue;
		for (j = 0; j < len[i]; j++)
			if (blk[i][j] != tag[i])
				bad = 1;
		envdbi_secure_free(blk[i]);
	}
	return bad ? (void *)1 : NULL;
}

START_TEST(test_threads)
{
	pthread_t t[THREADS];
	void *res;
	int round, i;

	/* Twice: the second round reuses what the ended threads gave back. */
	for (round = 0; round < 2; round++) {
		for (i = 0; i < THREADS; i++)
			ck_assert_int_eq(pthread_create(&t[i], NULL, churn,
							(void *)(uintptr_t)(round * 16 + i + 1)),
					 0);
		for (i = 0; i < THREADS; i++) {
			ck_assert_int_eq(pthread_join(t[i], &res), 0);
			ck_assert_msg(res == NULL, "thread %d saw a corrupted block", i);
		}
	}
	/* And this thread still works with what they left. */
	ck_assert_ptr_null(churn((void *)(uintptr_t)99));
}
END_TEST

START_TEST(test_double_free_aborts)
{
	pid_t pid;
	int status = 0;

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		void *p = envdbi_secure_alloc(64);

		/* No core file for the expected abort. */
		signal(SIGABRT, SIG_DFL);
		envdbi_secure_free(p);
		envdbi_secure_free(p);
		_exit(0); /* not reached */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
		      "a double free must abort (status %d)", status);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("secmem");
	TCase *tc = tcase_create("pool");

	tcase_add_test(tc, test_sizes_and_alignment);
	tcase_add_test(tc, test_output_buffer_pooled);
	tcase_add_test(tc, test_wiped_and_reused);
	tcase_add_test(tc, test_secret);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_double_free_aborts);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
