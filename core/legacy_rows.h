/*
 * core/legacy_rows.h — the record structs of the legacy v4 shim objects
 * (sys_tenant_database, sys_package_installation): the rows the object
 * definitions (schema.c) describe and the store (store.h) reads and writes.
 * The public objects' records are in <envdb/envdb.h>.
 */
#ifndef ENVDB_LEGACY_ROWS_H
#define ENVDB_LEGACY_ROWS_H

#include <stdint.h>

typedef struct envdbi_tenant_db_row {
	char *id;
	char *organization_id;
	char *database_name;    /**< unique */
	char *database_url;
	char *auth_token;       /**< legacy-encrypted token (ciphertext), or NULL */
	char *status;           /**< active, suspended, archived, failed */
	char *region;
	char *plan;             /**< free, starter, pro, enterprise, custom */
	int64_t storage_limit_mb;
	char *driver;           /**< adapter plugin name, or NULL (manifest default) */
	char *migrated_environment_id; /**< set when migrated to v5, else NULL */
	int64_t created_at;
	int64_t updated_at;
} envdbi_tenant_db_row;

typedef struct envdbi_package_row {
	char *id;
	char *tenant_id;        /**< legacy tenant (sys_tenant_database.id) or, after
				     migration, an environment id; not a foreign key */
	char *package_id;
	char *version;
	char *status;           /**< installed, installing, failed, uninstalled */
	int64_t created_at;
	int64_t updated_at;
} envdbi_package_row;

#endif /* ENVDB_LEGACY_ROWS_H */
