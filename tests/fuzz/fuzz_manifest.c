/*
 * tests/fuzz/fuzz_manifest.c — libFuzzer harness of the manifest parser
 * (core/manifest.c): any byte string written as envdb.yaml must load or be
 * refused with ENVDB_ERR_CONFIG/ENVDB_ERR_IO and a "FILE:LINE:COLUMN"
 * message, without crashing, leaking, or taking unbounded time or memory
 * (anchors, aliases and deep nesting included).  Seeds: corpus/manifest/.
 */
#include "config.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	envdbi_manifest *m = NULL;
	int fd, rc;

	if (path[0] == '\0') {
		snprintf(path, sizeof(path), "/tmp/envdb-fuzz-manifest-%d.yaml", (int)getpid());
		setenv("ENVDB_LOG_LEVEL", "error", 1);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		abort();
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	rc = envdbi_manifest_load(&m, path);
	if (rc == ENVDB_OK) {
		/* what a loaded manifest promises */
		/* a file control plane is an absolute path; a server one has none */
		if (m == NULL || m->control_plane_driver == NULL ||
		    (strcmp(m->control_plane_driver, "sqlite") == 0
			     ? m->control_plane == NULL || m->control_plane[0] != '/'
			     : m->control_plane != NULL || m->control_plane_schema == NULL ||
				       (m->control_plane_conninfo_file == NULL) ==
					       (m->control_plane_conninfo_env == NULL)))
			abort();
		envdbi_manifest_free(m);
	} else {
		const char *msg = envdb_error_last()->message;

		if (m != NULL || (rc != ENVDB_ERR_CONFIG && rc != ENVDB_ERR_IO &&
				  rc != ENVDB_ERR_NOMEM) || msg == NULL || msg[0] == '\0')
			abort();
	}
	return 0;
}
