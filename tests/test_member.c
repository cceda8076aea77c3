/*
 * tests/test_member.c — environment members through the public API
 * (core/member.c) on a real deployment (tests/testdeploy.h: sqlite/faulty
 * adapters, kms encryptor): add/remove/list, EXISTS vs update-role
 * semantics, bad input, archived environments, and that every membership
 * change invalidates the resolve cache (a cached result is never handed to a
 * removed member nor at the old authorization after a role change).
 */
#include "config.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "testdeploy.h"

static td T;
static envdb_ctx *ctx;

static void setup(void)
{
	td_setup(&T, NULL);
	ctx = td_open(&T);
	int rc = td_provision(ctx, "acme", "prod", NULL, "alice");
	ck_assert_msg(rc == ENVDB_OK, "provision: %s", envdb_error_last()->message);
}

static void teardown(void)
{
	envdb_close(ctx);
	ctx = NULL;
	td_teardown(&T);
}

static void expect_error(int rc, int status, const char *message)
{
	ck_assert_msg(rc == status, "rc %d (want %d): %s", rc, status, envdb_error_last()->message);
	ck_assert_str_eq(envdb_error_last()->message, message);
}

static const envdb_member *find_member(envdb_member **v, size_t n, const char *user)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i]->user_id, user) == 0)
			return v[i];
	return NULL;
}

START_TEST(add_list_remove)
{
	envdb_member_opts o = ENVDB_MEMBER_OPTS_INIT;
	envdb_member **v = NULL;
	size_t n = 0;

	o.invited_by = "alice";
	ck_assert_int_eq(envdb_member_add(ctx, "acme", "prod", "bob", "reader", &o), ENVDB_OK);
	ck_assert_int_eq(envdb_member_add(ctx, "acme", "prod", "carol", "guest", NULL), ENVDB_OK);
	ck_assert_int_eq(envdb_member_list(&v, &n, ctx, "acme", "prod"), ENVDB_OK);
	ck_assert_uint_eq(n, 3);
	/* ordered by user id; the creator is the owner */
	ck_assert_str_eq(v[0]->user_id, "alice");
	ck_assert_str_eq(v[0]->role, "owner");
	const envdb_member *bob = find_member(v, n, "bob");
	ck_assert_ptr_nonnull(bob);
	ck_assert_str_eq(bob->role, "reader");
	ck_assert_str_eq(bob->invited_by, "alice");
	ck_assert_int_gt(bob->created_at, 0);
	ck_assert_ptr_null(find_member(v, n, "carol")->invited_by);
	envdb_member_list_free(v, n);

	ck_assert_int_eq(envdb_member_remove(ctx, "acme", "prod", "carol"), ENVDB_OK);
	expect_error(envdb_member_remove(ctx, "acme", "prod", "carol"), ENVDB_ERR_NOT_FOUND,
		     "environment acme/prod: member carol: not found");
	ck_assert_int_eq(envdb_member_list(&v, &n, ctx, "acme", "prod"), ENVDB_OK);
	ck_assert_uint_eq(n, 2);
	envdb_member_list_free(v, n);
	ck_assert_uint_eq(td_check(ctx), 0);
}
END_TEST

START_TEST(existing_member_and_update)
{
	envdb_member_opts o = ENVDB_MEMBER_OPTS_INIT;
	envdb_member **v = NULL;
	size_t n = 0;

	ck_assert_int_eq(envdb_member_add(ctx, "acme", "prod", "bob", "reader", NULL), ENVDB_OK);
	expect_error(envdb_member_add(ctx, "acme", "prod", "bob", "admin", NULL), ENVDB_ERR_EXISTS,
		     "environment acme/prod: user bob is already a member");
	o.flags = ENVDB_MEMBER_UPDATE;
	o.invited_by = "alice";
	ck_assert_int_eq(envdb_member_add(ctx, "acme", "prod", "bob", "admin", &o), ENVDB_OK);
	/* update on a non-member simply adds */
	ck_assert_int_eq(envdb_member_add(ctx, "acme", "prod", "dave", "maker", &o), ENVDB_OK);
	ck_assert_int_eq(envdb_member_list(&v, &n, ctx, "acme", "prod"), ENVDB_OK);
	ck_assert_str_eq(find_member(v, n, "bob")->role, "admin");
	ck_assert_str_eq(find_member(v, n, "bob")->invited_by, "alice");
	ck_assert_str_eq(find_member(v, n, "dave")->role, "maker");
	envdb_member_list_free(v, n);

	/* an option struct from an older caller (struct_size without flags) */
	envdb_member_opts old = {offsetof(envdb_member_opts, flags), "root", ENVDB_MEMBER_UPDATE};
	ck_assert_int_eq(envdb_member_add(ctx, "acme", "prod", "bob", "guest", &old),
			 ENVDB_ERR_EXISTS);
}
END_TEST

START_TEST(bad_input_changes_nothing)
{
	envdb_member **v = NULL;
	size_t n = 0;

	expect_error(envdb_member_add(ctx, "acme", "prod", "bob", "superuser", NULL),
		     ENVDB_ERR_INVALID,
		     "environment acme/prod: member add bob: role 'superuser' is not one of owner, admin, maker, reader, guest");
	expect_error(envdb_member_add(ctx, "acme", "prod", "", "reader", NULL), ENVDB_ERR_INVALID,
		     "environment acme/prod: member add: empty user id");
	expect_error(envdb_member_add(ctx, "acme", "nope", "bob", "reader", NULL),
		     ENVDB_ERR_NOT_FOUND, "environment acme/nope: not found");
	ck_assert_int_eq(envdb_member_add(ctx, "acme", "Prod", "bob", "reader", NULL),
			 ENVDB_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(envdb_error_last()->message, "invalid slug"));
	ck_assert_int_eq(envdb_member_add(NULL, "acme", "prod", "bob", "reader", NULL),
			 ENVDB_ERR_MISUSE);
	ck_assert_int_eq(envdb_member_list(&v, &n, ctx, "other", "prod"), ENVDB_ERR_NOT_FOUND);
	ck_assert_int_eq(envdb_member_remove(ctx, "acme", "prod", "nobody"), ENVDB_ERR_NOT_FOUND);
	ck_assert_int_eq(envdb_member_list(&v, &n, ctx, "acme", "prod"), ENVDB_OK);
	ck_assert_uint_eq(n, 1);
	envdb_member_list_free(v, n);
}
END_TEST

START_TEST(changes_invalidate_resolve_cache)
{
	envdb_connection *c = NULL;

	ck_assert_int_eq(envdb_member_add(ctx, "acme", "prod", "bob", "maker", NULL), ENVDB_OK);
	ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "prod", "bob"), ENVDB_OK);
	ck_assert_str_eq(c->authorization, "full_access");
	envdb_connection_free(c);
	/* cached now (TTL 60 s): a role change must still be seen at once */
	envdb_member_opts o = ENVDB_MEMBER_OPTS_INIT;
	o.flags = ENVDB_MEMBER_UPDATE;
	ck_assert_int_eq(envdb_member_add(ctx, "acme", "prod", "bob", "reader", &o), ENVDB_OK);
	int rc = envdb_resolve(&c, ctx, "acme", "prod", "bob");
	ck_assert_msg(rc == ENVDB_OK, "resolve: %s", envdb_error_last()->message);
	ck_assert_str_eq(c->authorization, "read_only");
	ck_assert_str_eq(c->role, "reader");
	envdb_connection_free(c);
	/* and a removal */
	ck_assert_int_eq(envdb_member_remove(ctx, "acme", "prod", "bob"), ENVDB_OK);
	ck_assert_int_eq(envdb_resolve(&c, ctx, "acme", "prod", "bob"), ENVDB_ERR_PERMISSION);
	ck_assert_ptr_null(c);
}
END_TEST

START_TEST(archived_environment_refuses_members)
{
	envdb_member **v = NULL;
	size_t n = 0;
	ck_assert_int_eq(envdb_env_archive(ctx, "acme", "prod"), ENVDB_OK);
	expect_error(envdb_member_add(ctx, "acme", "prod", "bob", "reader", NULL), ENVDB_ERR_STATE,
		     "environment acme/prod: member add bob: the environment is archived");
	/* listing and removing still work */
	ck_assert_int_eq(envdb_member_list(&v, &n, ctx, "acme", "prod"), ENVDB_OK);
	ck_assert_uint_eq(n, 1);
	envdb_member_list_free(v, n);
	ck_assert_int_eq(envdb_member_remove(ctx, "acme", "prod", "alice"), ENVDB_OK);
}
END_TEST

/* A child that provisions acme/dev and is killed right after committing
 * the intent: the environment stays "provisioning". */
static int provision_killed_child(void *arg)
{
	envdb_ctx *c = NULL;

	(void)arg;
	if (envdb_open(&c, T.manifest, 0) != ENVDB_OK)
		return 90;
	td_failpoints("provision.after_intent=kill");
	td_provision(c, "acme", "dev", NULL, "alice");
	envdb_close(c);
	return 91;
}

START_TEST(provisioning_intent_refuses_members)
{
	envdb_environment *env = NULL;
	envdb_member **v = NULL;
	size_t n = 0;
	int status;

#ifndef ENVDB_FAILPOINTS
	fprintf(stderr, "SKIP %s: failpoints not compiled in (configure --enable-failpoints)\n",
		__func__);
	return;
#endif
	status = td_fork(provision_killed_child, NULL);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		      "the child was not killed at its failpoint (status 0x%x)", status);
	ck_assert_int_eq(envdb_env_get(&env, ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_str_eq(env->status, "provisioning");
	envdb_environment_free(env);
	expect_error(envdb_member_add(ctx, "acme", "dev", "mallory", "owner", NULL),
		     ENVDB_ERR_STATE,
		     "environment acme/dev: member add mallory: the environment is still being "
		     "provisioned; add members once it is active");
	/* ENVDB_MEMBER_UPDATE does not get around it either */
	envdb_member_opts mo = ENVDB_MEMBER_OPTS_INIT;
	mo.flags = ENVDB_MEMBER_UPDATE;
	ck_assert_int_eq(envdb_member_add(ctx, "acme", "dev", "mallory", "owner", &mo),
			 ENVDB_ERR_STATE);
	ck_assert_int_eq(envdb_member_list(&v, &n, ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_uint_eq(n, 0);
	envdb_member_list_free(v, n);
	/* Once reconcile rolled the intent back and the slug is provisioned
	 * again, only its creator is a member. */
	ck_assert_uint_eq(td_reconcile_apply(ctx, 3600), 0);
	ck_assert_int_eq(td_provision(ctx, "acme", "dev", NULL, "bob"), ENVDB_OK);
	ck_assert_int_eq(envdb_member_list(&v, &n, ctx, "acme", "dev"), ENVDB_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(v[0]->user_id, "bob");
	envdb_member_list_free(v, n);
	ck_assert_uint_eq(td_check(ctx), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("member");
	TCase *tc = tcase_create("member");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, add_list_remove);
	tcase_add_test(tc, existing_member_and_update);
	tcase_add_test(tc, bad_input_changes_nothing);
	tcase_add_test(tc, changes_invalidate_resolve_cache);
	tcase_add_test(tc, archived_environment_refuses_members);
	tcase_add_test(tc, provisioning_intent_refuses_members);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return sm_run(suite) ? EXIT_FAILURE : EXIT_SUCCESS;
}
