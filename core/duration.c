/*
 * core/duration.c — the one duration grammar (core/duration.h).
 */
#include "config.h"

#include <stddef.h>
#include <string.h>

#include "duration.h"

static const struct {
	char unit;
	int64_t seconds;
} units[] = {{'w', 7 * 86400}, {'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};

#define N_UNITS (sizeof(units) / sizeof(units[0]))

int envdbi_duration_parse(int64_t *seconds, const char *s)
{
	int64_t total = 0;
	size_t next_unit = 0; /* units before this index are used up */
	const char *p = s;

	if (seconds == NULL || s == NULL || *s == '\0')
		return -1;
	while (*p != '\0') {
		int64_t v = 0;
		size_t u;

		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (v > (INT64_MAX - (*p - '0')) / 10)
				return -1;
			v = v * 10 + (*p - '0');
		}
		if (*p == '\0') {
			/* plain seconds: only as the whole string */
			if (p != s + strspn(s, "0123456789"))
				return -1;
			*seconds = v;
			return 0;
		}
		for (u = next_unit; u < N_UNITS && units[u].unit != *p; u++)
			;
		if (u == N_UNITS)
			return -1; /* unknown unit, or out of order, or repeated */
		if (v > INT64_MAX / units[u].seconds || total > INT64_MAX - v * units[u].seconds)
			return -1;
		total += v * units[u].seconds;
		next_unit = u + 1;
		p++;
	}
	*seconds = total;
	return 0;
}
