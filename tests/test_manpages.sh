#!/bin/sh
# tests/test_manpages.sh — the manual agrees with the command.
#
# Runs the built envdb ($ENVDB_TEST_BUILDDIR/core/envdb) and checks the built
# man/envdb.1 (the page that gets installed):
#   1. every command of `envdb --help` has its ".SS" entry under COMMANDS,
#      and every entry there is a command of `envdb --help` (nothing stale);
#   2. every option in a command's usage line appears in that command's
#      entry;
#   3. every option of the option tables in core/cli*.c, and every global
#      option, appears in envdb.1;
#   4. every exit status `envdb --help` lists has its entry under EXIT STATUS;
#   5. every page renders without a warning (man --warnings), when man(1)
#      is installed.
# Prints one line per check and "N passed, N failed".
set -u
build=${ENVDB_TEST_BUILDDIR:?ENVDB_TEST_BUILDDIR is not set (run through make check)}
src=${ENVDB_TEST_SRCDIR:?ENVDB_TEST_SRCDIR is not set (run through make check)}
envdb=$build/core/envdb
page=$build/man/envdb.1
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $*"; }
nok() { fail=$((fail + 1)); echo "FAIL - $*"; }

[ -x "$envdb" ] || { echo "FAIL - $envdb is not built"; echo "0 passed, 1 failed"; exit 1; }
[ -f "$page" ] || { echo "FAIL - $page is not built"; echo "0 passed, 1 failed"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

# Help: the usage lines of the command table (two-space indent, a word).
if ! "$envdb" --help >"$tmp/help" 2>"$tmp/help.err"; then
	nok "envdb --help exits 0"
	cat "$tmp/help.err"
fi
# The usage is what comes before the column of help texts (two spaces or
# more); a usage too long for the column has its help on the next line.
awk '/^commands:/ { on = 1; next } /^$/ { on = 0 }
	on && /^  [a-z]/ { sub(/^  /, ""); sub(/  +.*/, ""); print }' "$tmp/help" >"$tmp/usages"
# "name sub" or "name": the second word counts when it is a plain word.
awk '{ if ($2 ~ /^[a-z][a-z0-9-]*$/) print $1 " " $2; else print $1 }' "$tmp/usages" \
	>"$tmp/commands"
n=$(wc -l <"$tmp/commands")
if [ "$n" -ge 20 ]; then
	ok "envdb --help lists $n commands"
else
	nok "envdb --help lists only $n commands"
fi

# The page: the .SS entries of COMMANDS, with their bodies.
awk '/^\.SH / { on = ($2 == "COMMANDS") } on && /^\.SS / { t = $0; sub(/^\.SS +/, "", t);
	gsub(/"/, "", t); gsub(/\\-/, "-", t); print t }' "$page" >"$tmp/entries"

while IFS= read -r cmd; do
	if grep -Fqx -- "$cmd" "$tmp/entries"; then
		ok "envdb.1 documents '$cmd'"
	else
		nok "envdb.1 has no entry '.SS \"$cmd\"' under COMMANDS for '$cmd' (envdb --help lists it)"
	fi
done <"$tmp/commands"
while IFS= read -r e; do
	grep -Fqx -- "$e" "$tmp/commands" ||
		nok "envdb.1 documents '$e', which envdb --help does not list"
done <"$tmp/entries"

# Options of each usage line, within that command's entry.
while IFS= read -r line; do
	cmd=$(echo "$line" | awk '{ if ($2 ~ /^[a-z][a-z0-9-]*$/) print $1 " " $2; else print $1 }')
	grep -Fqx -- "$cmd" "$tmp/entries" || continue
	awk -v want="$cmd" '/^\.S[HS] / { t = $0; sub(/^\.S[HS] +/, "", t); gsub(/"/, "", t);
		gsub(/\\-/, "-", t); on = ($1 == ".SS" && t == want); next }
		on { gsub(/\\-/, "-"); print }' "$page" >"$tmp/entry"
	missing=""
	for o in $(echo "$line" | grep -o -- '--[a-z][a-z0-9-]*' | sort -u); do
		grep -q -- "$o" "$tmp/entry" || missing="$missing $o"
	done
	if [ -z "$missing" ]; then
		ok "envdb.1 '$cmd' documents the options of its usage"
	else
		nok "envdb.1 '$cmd' does not document:$missing"
	fi
done <"$tmp/usages"

# Every option the command parses, and the global ones.
sed 's/\\-/-/g' "$page" >"$tmp/page"
opts=$(cat "$src"/core/cli*.c | grep -o '{"[a-z][a-z0-9-]*", ENVDB_CLI_' |
	sed 's/{"\([^"]*\)".*/\1/' | sort -u)
missing=""
for o in $opts manifest json output quiet help version; do
	grep -q -- "--$o" "$tmp/page" || missing="$missing --$o"
done
if [ -z "$missing" ]; then
	ok "envdb.1 documents every option of core/cli*.c ($(echo $opts | wc -w)) and the global ones"
else
	nok "envdb.1 does not document:$missing"
fi

# Exit statuses: "NN word" in the help's exit status paragraph.
codes=$(sed -n '/^exit status:/,$p' "$tmp/help" | grep -o '[0-9][0-9]* [a-z]' | cut -d' ' -f1 | sort -u)
awk '/^\.SH / { on = ($0 ~ /EXIT STATUS/) } on && /^\.B [0-9]+$/ { print $2 }' "$page" \
	>"$tmp/codes"
missing=""
for c in $codes; do
	grep -qx "$c" "$tmp/codes" || missing="$missing $c"
done
if [ -n "$codes" ] && [ -z "$missing" ]; then
	ok "envdb.1 documents the exit statuses $(echo $codes)"
else
	nok "envdb.1 EXIT STATUS lacks:$missing (help lists: $(echo $codes))"
fi

# No template placeholder left in any built page.
left=$(grep -l '@[A-Z_]*@' "$build"/man/*.[157] 2>/dev/null)
if [ -z "$left" ]; then
	ok "no @PLACEHOLDER@ left in the built pages"
else
	nok "placeholders left in: $left"
fi

# Rendering: man(1) --warnings prints groff's warnings on stderr.
if command -v man >/dev/null 2>&1; then
	for p in "$build"/man/*.[157]; do
		LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$p" >"$tmp/out" 2>"$tmp/warn.all"
		# "can't break line" depends on the length of the installation
		# paths substituted into the page (long under make distcheck),
		# not on the page's markup.
		grep -v "can't break line" "$tmp/warn.all" >"$tmp/warn" || :
		if [ -s "$tmp/warn" ] || [ ! -s "$tmp/out" ]; then
			nok "$(basename "$p") renders cleanly: $(head -5 "$tmp/warn")"
		else
			ok "$(basename "$p") renders without warnings"
		fi
	done
else
	echo "skip - rendering: man(1) is not installed"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
