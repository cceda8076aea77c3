/*
 * core/failpoint.h — named failure-injection points for crash tests.
 *
 * A failpoint marks a step boundary of a multi-step operation (provisioning,
 * deletion, rotation, rotation completion, rewrap, reconcile):
 *
 *     if ((rc = ENVDB_FAILPOINT("provision.after_intent")) != 0)
 *             goto fail;
 *
 * Without ENVDB_FAILPOINTS defined (configure --enable-failpoints defines
 * it) the macro is the constant 0 and the branch disappears.  With it, the
 * environment variable ENVDB_FAILPOINTS="name=action[,name=action...]"
 * arms points by name; action is
 *     error   the step fails: ENVDB_ERR_GENERIC with the message
 *             "failpoint NAME: injected error" in the last error;
 *     kill    the process raises SIGKILL at that point (a crash between
 *             two steps: nothing after it runs, no cleanup, no atexit).
 * The variable is read at every hit (test builds only), so a test may set
 * it between calls.  Every name used in the code is listed in
 * ENVDBI_FAILPOINT_LIST; hitting an unlisted name aborts (test builds), so
 * the list a test enumerates is complete.
 *
 * A release build (no --enable-failpoints) carries no failpoint name: the
 * list below expands to nothing in code, envdbi_failpoint_names is empty,
 * and a name handed to a helper is written ENVDBI_FP("name"), which is
 * NULL there.  tests/test_release.sh checks that with nm and strings.
 */
#ifndef ENVDB_FAILPOINT_H
#define ENVDB_FAILPOINT_H

#include <stddef.h>

/** Every failpoint name, as an X-macro so that a test (which links only
 * the public library) can enumerate them: X(name, what happened before it). */
#define ENVDBI_FAILPOINT_LIST(X)                                                        \
	/* provision.c: provisioning an environment */                                 \
	X("provision.after_intent", "intent row committed, nothing external yet")       \
	X("provision.after_create", "physical database created")                        \
	X("provision.after_mint", "credential(s) minted")                                \
	X("provision.encrypt", "instead of sealing a secret: the encryptor fails")      \
	X("provision.after_encrypt", "secrets sealed, final transaction not begun")     \
	X("provision.commit", "inside the final transaction, before the commit")           \
	X("provision.after_commit", "environment active")                               \
	X("provision.compensate", "the compensating drop after a failure")              \
	X("provision.after_compensate", "compensating drop done, intent row not deleted") \
	/* provision.c: deleting an environment */                                     \
	X("delete.after_intent", "deletion intent (archived, delete_after) committed")  \
	X("delete.after_drop", "physical database dropped, rows still there")          \
	/* credential.c: rotation */                                                   \
	X("rotate.after_mint", "new credentials minted at the backend")                 \
	X("rotate.encrypt", "instead of sealing a secret: the encryptor fails")         \
	X("rotate.commit", "inside the rotation transaction, before the commit")            \
	X("rotate.after_commit", "new credentials active, previous ones rotating")      \
	/* credential.c: completion and revocation */                                  \
	X("complete.after_revoke", "revoked at the backend, row not yet revoked")       \
	/* credential.c: rewrap */                                                     \
	X("rewrap.after_seal", "a new ciphertext made, its row not yet updated")        \
	X("rewrap.after_row", "one row rewrapped and committed")                        \
	/* reconcile.c */                                                              \
	X("reconcile.after_claim", "an expired intent claimed (failed), database kept") \
	X("reconcile.after_intent_drop", "an expired intent's database dropped, row kept") \
	X("reconcile.after_deletion_drop", "a due deletion's database dropped, rows kept") \
	X("reconcile.after_revoke", "an ended rotation revoked at the backend, row kept") \
	X("reconcile.after_orphan_drop", "an orphan physical database dropped")         \
	/* migrate.c: v4 -> v5 migration (core/MIGRATION.md) */                        \
	X("migrate.begin", "a batch transaction is about to begin")                     \
	X("migrate.decrypt", "instead of decrypting a legacy token")                    \
	X("migrate.encrypt", "instead of re-encrypting it")                             \
	X("migrate.plan", "an organization planned, nothing of it written")             \
	X("migrate.environment", "environment row inserted")                            \
	X("migrate.database", "database row inserted")                                  \
	X("migrate.credential", "credential row inserted")                              \
	X("migrate.member", "owner inserted")                                           \
	X("migrate.packages", "package installations repointed")                        \
	X("migrate.archive", "legacy row archived")                                     \
	X("migrate.commit", "batch complete, before the commit")                            \
	X("migrate.after_commit", "batch committed")                                    \
	/* store_copy.c: envdb store copy */                                            \
	X("store_copy.commit", "target written and verified, before its commit")

/** Every failpoint name, NULL-terminated.  Static. */
extern const char *const envdbi_failpoint_names[];

/** 1 when failpoints are compiled into this build, else 0. */
int envdbi_failpoints_enabled(void);

/* ENVDB_NO_FAILPOINTS forces the release form in a failpoint build (the
 * probe objects tests/test_release.sh inspects in any build). */
#if defined(ENVDB_FAILPOINTS) && defined(ENVDB_NO_FAILPOINTS)
#undef ENVDB_FAILPOINTS
#endif

#ifdef ENVDB_FAILPOINTS
/** Evaluate failpoint `name`: 0 when not armed, ENVDB_ERR_GENERIC (last
 * error set) when armed with "error"; does not return when armed with
 * "kill".  A NULL name is never armed. */
int envdbi_failpoint_hit(const char *name);
#define ENVDB_FAILPOINT(name) envdbi_failpoint_hit(name)
/** A failpoint name passed as a value (to a helper that hits it later). */
#define ENVDBI_FP(name) (name)
#else
#define ENVDB_FAILPOINT(name) 0
/* Release builds carry no failpoint name at all (tests/test_release.sh
 * checks the binaries with strings and nm): a name passed as a value
 * becomes NULL, so its literal is not compiled in. */
#define ENVDBI_FP(name) ((const char *)NULL)
#endif

#endif /* ENVDB_FAILPOINT_H */
