/*
 * core/duration.h — envdbi_duration_parse(), the one duration grammar of
 * envdb, shared by libenvdb (manifest durations) and the envdb command
 * (--overlap, --expires, ...) (core/duration.c).  Internal: not exported
 * from libenvdb.
 *
 * Grammar: plain seconds ("90"), or one or more NUMBER UNIT terms with
 * the units in decreasing order and each at most once: w (week, 7 days),
 * d (day), h (hour), m (minute), s (second).  "90s", "15m", "1h30m",
 * "2d", "1w", "1d12h".  No sign, no spaces, no fractions, no empty
 * string; the total must fit in int64 seconds.
 */
#ifndef ENVDB_DURATION_H
#define ENVDB_DURATION_H

#include <stdint.h>

/** The longest duration a lifetime, overlap, lease or grace period may be
 * (100 years): now + it neither overflows int64 nor passes year 9999, the
 * last an ISO 8601 time of the output can show.  The grammar itself takes
 * any int64; the callers that add a duration to now bound it by this. */
#define ENVDBI_DURATION_MAX_S ((int64_t)100 * 366 * 86400)

/** The examples error messages name. */
#define ENVDBI_DURATION_EXAMPLES "90s, 15m, 1h30m, 7d"

/** Parse `s` into *seconds.  Returns 0, or -1 (and *seconds untouched)
 * when `s` is not a duration of the grammar above. */
int envdbi_duration_parse(int64_t *seconds, const char *s);

#endif /* ENVDB_DURATION_H */
