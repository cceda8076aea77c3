/*
 * core/failpoint.c — the failure-injection facility of core/failpoint.h:
 * the list of every failpoint name and, in builds configured with
 * --enable-failpoints, the evaluation of ENVDB_FAILPOINTS at each hit.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "failpoint.h"
#include "internal.h"

#ifdef ENVDB_FAILPOINTS
#define FAILPOINT_NAME(name, what) name,
const char *const envdbi_failpoint_names[] = {ENVDBI_FAILPOINT_LIST(FAILPOINT_NAME) NULL};
#undef FAILPOINT_NAME
#else
/* Release builds: no name is compiled in (tests/test_release.sh). */
const char *const envdbi_failpoint_names[] = {NULL};
#endif

int envdbi_failpoints_enabled(void)
{
#ifdef ENVDB_FAILPOINTS
	return 1;
#else
	return 0;
#endif
}

#ifdef ENVDB_FAILPOINTS

static int failpoint_known(const char *name)
{
	size_t i;

	for (i = 0; envdbi_failpoint_names[i] != NULL; i++)
		if (strcmp(envdbi_failpoint_names[i], name) == 0)
			return 1;
	return 0;
}

/* The action armed for `name` in `spec` ("a=error,b=kill"): 'e', 'k' or 0. */
static int failpoint_action(const char *spec, const char *name)
{
	size_t name_len = strlen(name);
	const char *p = spec;

	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len > name_len + 1 && strncmp(p, name, name_len) == 0 && p[name_len] == '=') {
			const char *act = p + name_len + 1;
			size_t act_len = len - name_len - 1;

			if (act_len == 5 && strncmp(act, "error", 5) == 0)
				return 'e';
			if (act_len == 4 && strncmp(act, "kill", 4) == 0)
				return 'k';
		}
		p = end ? end + 1 : NULL;
	}
	return 0;
}

int envdbi_failpoint_hit(const char *name)
{
	const char *spec;

	if (name == NULL)
		return 0;
	if (!failpoint_known(name)) {
		fprintf(stderr, "envdb: failpoint %s is not in envdbi_failpoint_names\n", name);
		abort();
	}
	spec = getenv("ENVDB_FAILPOINTS");
	if (spec == NULL || *spec == '\0')
		return 0;
	switch (failpoint_action(spec, name)) {
	case 'e':
		return envdbi_error(ENVDB_ERR_GENERIC, NULL, "failpoint %s: injected error", name);
	case 'k':
		raise(SIGKILL);
		/* SIGKILL cannot be caught; never reached. */
		_exit(137);
	default:
		return 0;
	}
}

#endif /* ENVDB_FAILPOINTS */
