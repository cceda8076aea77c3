/*
 * mini_host.h — a minimal envdb host for the plugin's own unit tests: it
 * fills an envdb_host the way envdb does (plain and secure allocators,
 * logging, error reporting, clocks, randomness) and remembers the last
 * error a plugin reported, so a test can drive the plugin's descriptor
 * directly without envdb installed.  For the full contract run
 * envdb-conformance (tests/conformance.sh).
 */
#ifndef MINI_HOST_H
#define MINI_HOST_H

#include <envdb/plugin.h>

/** Fill *host with the mini host's services. */
void mini_host_init(envdb_host *host);

/** Status, native code and message of the last host->error() call on this
 * host ("" when none), and clear them. */
int mini_host_last_status(void);
const char *mini_host_last_message(void);
void mini_host_clear(void);

/** Allocations from alloc and from secure_alloc not yet freed. */
long mini_host_live_allocs(void);
long mini_host_live_secure_allocs(void);

#endif /* MINI_HOST_H */
