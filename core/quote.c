/*
 * core/quote.c — one way to show a value that came from outside (argv, a
 * request) in a message: printable ASCII as is, everything else as \xNN.
 * Compiled into libenvdb (core/ident.c's checks) and into the envdb
 * command (usage errors echo argv), so the two escape alike.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "quote.h"

void envdbi_quote(char *out, size_t cap, const char *s)
{
	size_t i, o = 0;

	if (cap == 0)
		return;
	if (s == NULL) {
		snprintf(out, cap, "(null)");
		return;
	}
	for (i = 0; s[i] != '\0' && o + 5 < cap; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (i == 48) {
			snprintf(out + o, cap - o, "...");
			o += strlen(out + o);
			break;
		}
		if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
			snprintf(out + o, cap - o, "\\x%02x", ch);
			o += 4;
		} else {
			out[o++] = (char)ch;
		}
	}
	out[o] = '\0';
}
