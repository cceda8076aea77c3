/*
 * core/quote.h — envdbi_quote(), shared by libenvdb and the envdb command
 * (core/quote.c).  Internal: not exported from libenvdb.
 */
#ifndef ENVDB_QUOTE_H
#define ENVDB_QUOTE_H

#include <stddef.h>

/** Room for any envdbi_quote() result: 48 characters of 4 bytes, "...", NUL. */
#define ENVDBI_QUOTE_MAX 200

/** Write `s` into out (cap bytes) with everything outside printable ASCII,
 * quotes and backslashes as \xNN, cut after 48 characters: safe to put in a
 * message. */
void envdbi_quote(char *out, size_t cap, const char *s);

#endif /* ENVDB_QUOTE_H */
