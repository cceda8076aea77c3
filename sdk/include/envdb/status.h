/*
 * envdb/status.h — status codes shared by libenvdb and every plugin.
 *
 * Every envdb function and every plugin operation returns an int: 0 is
 * success, a negative value is one of the typed errors below.  The detail of
 * an error (a message naming the object, the operation and the cause, and
 * optionally the backend's own code such as a SQLSTATE or an HTTP status)
 * travels separately: through envdb_error_last() in the library, through the
 * host's error service (envdb_host.error) in a plugin.
 *
 * The numeric values are part of the ABI: a value is never reused or
 * renumbered; new codes are only appended.
 *
 * Introduced in ABI 1.0.
 */
#ifndef ENVDB_STATUS_H
#define ENVDB_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

enum envdb_status {
	ENVDB_OK = 0,
	/** Unclassified failure; prefer a specific code. */
	ENVDB_ERR_GENERIC = -1,
	/** The caller broke a precondition (NULL where not allowed, bad flags). */
	ENVDB_ERR_MISUSE = -2,
	/** The object (environment, database, credential, key, plugin) does not exist. */
	ENVDB_ERR_NOT_FOUND = -3,
	/** The object already exists (duplicate slug, second default, existing file). */
	ENVDB_ERR_EXISTS = -4,
	/** Authentication failed: wrong or expired credential, rejected token. */
	ENVDB_ERR_AUTH = -5,
	/** Authenticated but not allowed (missing privilege, not a member). */
	ENVDB_ERR_PERMISSION = -6,
	/** The backend cannot be reached or is overloaded; retrying may succeed. */
	ENVDB_ERR_UNAVAILABLE = -7,
	/** The operation's deadline passed. */
	ENVDB_ERR_TIMEOUT = -8,
	/** Data failed an integrity check (AEAD tag, wrong associated data, corrupt row). */
	ENVDB_ERR_INTEGRITY = -9,
	/** An output buffer is too small; the required size was reported. */
	ENVDB_ERR_BUFFER_TOO_SMALL = -10,
	/** The capability is absent (NULL slot, capability bit clear, driver limitation). */
	ENVDB_ERR_NOT_SUPPORTED = -11,
	/** Memory (or secure memory) could not be allocated. */
	ENVDB_ERR_NOMEM = -12,
	/** A local I/O operation failed (file, directory, permissions on disk). */
	ENVDB_ERR_IO = -13,
	/** Configuration is invalid (manifest, plugin configuration, key files). */
	ENVDB_ERR_CONFIG = -14,
	/** A plugin's ABI does not match the host's. */
	ENVDB_ERR_ABI = -15,
	/** Input data is invalid (a slug, an enum value, a name, a ciphertext format). */
	ENVDB_ERR_INVALID = -16,
	/** The object is in a state that forbids the operation (archived, provisioning). */
	ENVDB_ERR_STATE = -17,
	/** The control plane is locked by another process beyond the busy timeout. */
	ENVDB_ERR_BUSY = -18
};

#ifdef __cplusplus
}
#endif

#endif /* ENVDB_STATUS_H */
