/*
 * core/schema.h — the control-plane object definitions as data.
 *
 * One static table (schema.c) describes every object, field and index.  The
 * DDL of each store backend (core/store_sql.c for the SQL ones), `envdb
 * schema` (text and JSON), the row validation of the store and the
 * invariant checker are all generated from it, so they cannot disagree.
 * This is the bottom of the house: pure data and data-level helpers, no
 * SQL, nothing of the store (store.h).  Each field also records where its
 * value lives in the object's record struct (offset), so the store reads and
 * writes rows generically.
 *
 * The table is validated when the store opens (envdbi_schema_validate): an
 * unknown field type, an undescribed field or object, a name without the
 * `sys_` prefix, an enum without values or with a default outside them, an
 * index naming an unknown column or a reference to an unknown object is
 * refused with ENVDB_ERR_CONFIG, so a broken definition can never reach a
 * running system (the seed's `Field.picklist` bug).
 */
#ifndef ENVDB_SCHEMA_H
#define ENVDB_SCHEMA_H

#include "internal.h"

/** Schema version of the object definitions, as every store records it
 * (SQLite: PRAGMA user_version).  Version 1 creates every table, index and
 * trigger from the object definitions; version 2 adds the columns defined
 * since (sys_database_credential.aad_version, 1 for the rows that exist);
 * version 3 adds the deployment id (one row of the store's own). */
#define ENVDBI_STORE_VERSION 3

/** Field types.  The C representation in the record struct follows the
 * type: text types are `char *`, BOOL is `int`, INT and TIME are
 * `int64_t`. */
typedef enum envdbi_ftype {
	ENVDBI_FT_UUID = 1,   /**< UUID text (v7 when envdb makes it), lowercase */
	ENVDBI_FT_TEXT,       /**< free text */
	ENVDBI_FT_SLUG,       /**< ^[a-z0-9][a-z0-9-]{0,62}$ */
	ENVDBI_FT_ENUM,       /**< one of enum_values */
	ENVDBI_FT_BOOL,       /**< 0 or 1 */
	ENVDBI_FT_INT,        /**< 64-bit integer */
	ENVDBI_FT_TIME,       /**< epoch seconds, 0 = none (stored as NULL) */
	ENVDBI_FT_JSON,       /**< JSON object text */
	ENVDBI_FT_CIPHERTEXT, /**< encryptor output, never plaintext */
	ENVDBI_FT_REF,        /**< UUID of a row of object `ref` (FOREIGN KEY) */
	ENVDBI_FT__END        /**< not a type: one past the last */
} envdbi_ftype;

/** Field flags. */
enum envdbi_field_flags {
	ENVDBI_FF_PRIMARY = 1u << 0,   /**< the primary key (exactly one, UUID) */
	ENVDBI_FF_IMMUTABLE = 1u << 1, /**< cannot change after insert (trigger) */
	ENVDBI_FF_POSITIVE = 1u << 2,  /**< INT > 0 */
	ENVDBI_FF_CASCADE = 1u << 3    /**< REF: ON DELETE CASCADE */
};

typedef struct envdbi_field_def {
	const char *name;
	envdbi_ftype type;
	const char *description;
	const char *const *enum_values; /**< NULL-terminated, ENUM only */
	bool required;                  /**< NOT NULL (TIME/INT: non-zero for TIME) */
	const char *default_value;      /**< as text ("production", "0", "{}") or NULL */
	const char *ref;                /**< REF: referenced object name */
	unsigned flags;                 /**< envdbi_field_flags */
	size_t offset;                  /**< offset of the value in the record */
} envdbi_field_def;

#define ENVDBI_MAX_INDEX_COLUMNS 4

typedef struct envdbi_index_def {
	const char *name;
	const char *columns[ENVDBI_MAX_INDEX_COLUMNS + 1]; /**< NULL-terminated */
	bool unique;
	/** partial index predicate, or NULL: a boolean expression over the
	 * object's column names with = AND OR NOT IN IS NULL and
	 * quoted text / integer literals only, the subset every SQL backend
	 * reads alike (a non-SQL backend evaluates the same subset) */
	const char *where;
	const char *description; /**< the rule it enforces */
	const char *invariant;   /**< unique only: the invariant name envdb check
				      reports ("unique_slug", ...) */
} envdbi_index_def;

typedef struct envdbi_object_def {
	const char *name;         /**< table name, "sys_..." */
	const char *label;        /**< word used in messages: "environment" */
	const char *description;
	const envdbi_field_def *fields;
	size_t n_fields;
	const envdbi_index_def *indexes;
	size_t n_indexes;
	size_t record_size;       /**< sizeof the record struct */
	bool legacy;              /**< registered only with manifest legacy_shim */
} envdbi_object_def;

/** The definitions of libenvdb, in dependency order (referenced objects
 * first).  Static. */
extern const envdbi_object_def envdbi_schema_objects[];
extern const size_t envdbi_schema_n_objects;
/* Fixed positions in envdbi_schema_objects. */
#define ENVDBI_OBJ_ENVIRONMENT (&envdbi_schema_objects[0])
#define ENVDBI_OBJ_DATABASE (&envdbi_schema_objects[1])
#define ENVDBI_OBJ_CREDENTIAL (&envdbi_schema_objects[2])
#define ENVDBI_OBJ_MEMBER (&envdbi_schema_objects[3])
#define ENVDBI_OBJ_TENANT_DB (&envdbi_schema_objects[4])
#define ENVDBI_OBJ_PACKAGE (&envdbi_schema_objects[5])

/** Validate a table of definitions (the built-in one or a test's).  Returns
 * 0, or ENVDB_ERR_CONFIG with "object definition NAME.FIELD: cause". */
int envdbi_schema_validate(const envdbi_object_def *objs, size_t n);

/** The definition of an object by name; NULL when absent. */
const envdbi_object_def *envdbi_schema_object(const char *name);
/** A field of an object by name; NULL when absent. */
const envdbi_field_def *envdbi_schema_field(const envdbi_object_def *o, const char *name);
/** The primary-key field of an object. */
const envdbi_field_def *envdbi_schema_primary(const envdbi_object_def *o);
/** Stable lowercase name of a type ("uuid", "enum", ...); NULL if unknown. */
const char *envdbi_ftype_name(envdbi_ftype t);
/** True when `v` is one of the field's enum values. */
bool envdbi_schema_enum_ok(const envdbi_field_def *f, const char *v);

/** Accessors of a field's value inside a record (no type check beyond an
 * assert: the caller picks the accessor of the field's C type). */
char **envdbi_field_str(const envdbi_field_def *f, void *record);
const char *envdbi_field_cstr(const envdbi_field_def *f, const void *record);
int64_t envdbi_field_int(const envdbi_field_def *f, const void *record);
void envdbi_field_set_int(const envdbi_field_def *f, void *record, int64_t v);
/** True for the types stored as `char *`. */
bool envdbi_ftype_is_text(envdbi_ftype t);

/* The value rules of the field types (what envdbi_schema_check_record and
 * envdb check apply). */
/** True when `s` is a lowercase canonical UUID text. */
bool envdbi_uuid_valid(const char *s);
/** True when `slug` matches ^[a-z0-9][a-z0-9-]{0,62}$. */
bool envdbi_slug_valid(const char *slug);
/** True when `ct` plausibly is encryptor output rather than a plaintext
 * secret: at least 24 chars of printable ASCII without whitespace, with at
 * least one ':', '.' or '$' separator (encryptor.h: ciphertexts are
 * self-describing and carry a format version and a key id, e.g.
 * "v1:KEYID:BASE64").  Used by the insert check and by envdb check; kept
 * deliberately loose. */
bool envdbi_ciphertext_plausible(const char *ct);

/**
 * Validate one record against its definition: required fields, enum
 * values, slug and UUID format, positive integers, JSON objects, plausible
 * ciphertexts.  `label` names the row in messages ("environment acme/prod").
 * Returns 0 or ENVDB_ERR_INVALID "LABEL: FIELD: cause".
 */
int envdbi_schema_check_record(const envdbi_object_def *o, const void *record, const char *label);
/* True when `s` is certainly a JSON object with no duplicate key, decided
 * without allocating; false means "not decided" (the caller asks jansson). */
bool envdbi_json_object_fast(const char *s);

/** Free every text field of a record and the record itself.  NULL allowed. */
void envdbi_record_free(const envdbi_object_def *o, void *record);
/** Deep copy; NULL on ENOMEM or a NULL record. */
void *envdbi_record_dup(const envdbi_object_def *o, const void *record);

/** JSON/text rendering of the table (every object when include_legacy). */
int envdbi_schema_render_json(char **out, bool include_legacy);
int envdbi_schema_render_text(char **out, bool include_legacy);

/* ------------------------------------------------------------------------ */
/* A small growable string used by the control-plane files (schema.c)        */
/* ------------------------------------------------------------------------ */

/** Appends never fail visibly: on ENOMEM `failed` is set and later appends
 * do nothing; check `failed` once at the end.  `data` is NUL-terminated (or
 * NULL while empty) and malloc'd: take it or envdbi_strbuf_free(). */
typedef struct envdbi_strbuf {
	char *data;
	size_t len, cap;
	bool failed;
} envdbi_strbuf;
#define ENVDBI_STRBUF_INIT { NULL, 0, 0, false }

void envdbi_strbuf_puts(envdbi_strbuf *b, const char *s);
void envdbi_strbuf_putc(envdbi_strbuf *b, char c);
void envdbi_strbuf_printf(envdbi_strbuf *b, const char *fmt, ...) ENVDB_PRINTF(2, 3);
void envdbi_strbuf_free(envdbi_strbuf *b);

/** Append the enum values of field `f`, comma-separated ("a, b, c"), for
 * messages that list what a value may be. */
void envdbi_schema_enum_list(envdbi_strbuf *b, const envdbi_field_def *f);

#endif /* ENVDB_SCHEMA_H */
