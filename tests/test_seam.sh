#!/bin/sh
# tests/test_seam.sh — the store seam holds (issue 16 §1): only the store
# backend files of core/ contain SQL or include a database driver header.
#
# Every other file of core/ (and core/include/) must not
#   1. include <sqlite3.h> or <libpq-fe.h>, nor use an sqlite3_ or PQ API;
#   2. hold an SQL statement in a string literal: a literal (comments
#      removed) with SELECT, INSERT INTO, UPDATE ... SET, DELETE FROM,
#      CREATE/DROP/ALTER TABLE|INDEX|TRIGGER|SCHEMA, PRAGMA, BEGIN
#      (IMMEDIATE|TRANSACTION), COMMIT, ROLLBACK, SAVEPOINT, RELEASE
#      SAVEPOINT, VACUUM or LISTEN/NOTIFY as an upper-case word.
# The backend files, the only ones allowed (add a backend here):
#   core/store_sqlite*.c core/store_sqlite*.h   the SQLite backend
#   core/store_sql*.c                           SQL shared by SQL backends
#   core/store_pg*.c core/store_pg*.h           the PostgreSQL backend
# Also checks that the check itself sees SQL (it finds the statements of
# the backend files), so a broken scanner cannot pass silently.
# Prints one line per check and "N passed, N failed".
set -u
src=${ENVDB_TEST_SRCDIR:-$(dirname "$0")/..}
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $*"; }
nok() { fail=$((fail + 1)); echo "FAIL - $*"; }

is_backend() {
	case $(basename "$1") in
	store_sqlite*.c | store_sqlite*.h | store_sql*.c | store_pg*.c | store_pg*.h) return 0 ;;
	*) return 1 ;;
	esac
}

# The string literals of a C file, comments removed, one per line ("FILE:LINE: text").
literals() {
	perl -e '
		local $/; my $f = shift; open(my $h, "<", $f) or die "$f: $!";
		my $t = <$h>; my $line = 1; my $i = 0; my $n = length $t;
		while ($i < $n) {
			my $c = substr($t, $i, 1);
			if ($c eq "\n") { $line++; $i++; next; }
			if (substr($t, $i, 2) eq "/*") {
				my $e = index($t, "*/", $i + 2); $e = $n - 2 if $e < 0;
				$line += () = substr($t, $i, $e + 2 - $i) =~ /\n/g; $i = $e + 2; next;
			}
			if (substr($t, $i, 2) eq "//") {
				my $e = index($t, "\n", $i); $e = $n if $e < 0; $i = $e; next;
			}
			if ($c eq "\x27") { # a character constant
				$i++; while ($i < $n && substr($t, $i, 1) ne "\x27") { $i += substr($t, $i, 1) eq "\\" ? 2 : 1; } $i++; next;
			}
			if ($c eq "\"") {
				my $s = ""; my $l = $line; $i++;
				while ($i < $n && substr($t, $i, 1) ne "\"") {
					if (substr($t, $i, 1) eq "\\") { $s .= substr($t, $i, 2); $i += 2; next; }
					$line++ if substr($t, $i, 1) eq "\n";
					$s .= substr($t, $i, 1); $i++;
				}
				$i++; print "$f:$l: $s\n"; next;
			}
			$i++;
		}' "$1"
}

SQL='\b(SELECT\b|INSERT INTO|UPDATE\b.*\bSET\b|DELETE FROM|(CREATE|DROP|ALTER)( UNIQUE)? (TABLE|INDEX|TRIGGER|SCHEMA)|PRAGMA\b|BEGIN (IMMEDIATE|TRANSACTION|EXCLUSIVE|DEFERRED)|\bCOMMIT\b|\bROLLBACK\b|\bSAVEPOINT\b|VACUUM\b|\bLISTEN\b|\bNOTIFY\b)'

files=$(find "$src/core" -name '*.c' -o -name '*.h' | sort)
[ -n "$files" ] || { echo "FAIL - no sources under $src/core"; echo "0 passed, 1 failed"; exit 1; }

# 1. driver headers and APIs
bad=
for f in $files; do
	is_backend "$f" && continue
	if grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](sqlite3|libpq-fe)\.h[>"]' "$f" >/dev/null ||
	    grep -nE '\b(sqlite3_[a-z_]+|PQ[a-z][A-Za-z]+)[[:space:]]*\(' "$f" >/dev/null; then
		bad="$bad ${f#"$src"/}"
	fi
done
if [ -z "$bad" ]; then
	ok "no core file outside the store backends includes or calls a database driver"
else
	nok "a database driver outside the store backends:$bad"
	for f in $bad; do
		grep -nE '#[[:space:]]*include[[:space:]]*[<"](sqlite3|libpq-fe)\.h|\b(sqlite3_[a-z_]+|PQ[a-z][A-Za-z]+)[[:space:]]*\(' "$src/$f" | sed "s|^|    $f:|" | head -5
	done
fi

# 2. SQL text
hits=$(for f in $files; do is_backend "$f" || literals "$f"; done | grep -E "$SQL")
if [ -z "$hits" ]; then
	ok "no SQL statement in a string literal outside the store backends"
else
	nok "SQL outside the store backends (move it behind store_backend.h):"
	echo "$hits" | sed "s|^$src/|    |" | head -20
fi

# 3. the scanner sees the SQL where it is (the backends)
seen=$(for f in $files; do is_backend "$f" && literals "$f"; done | grep -cE "$SQL")
if [ "$seen" -gt 10 ]; then
	ok "the scanner finds the SQL of the backend files ($seen literals)"
else
	nok "the scanner finds only $seen SQL literals in the backend files: it is broken"
fi
# ... and the driver check sees the SQLite backend's include
if grep -qE '^#include <sqlite3\.h>' "$src/core/store_sqlite.c"; then
	ok "the driver check has something to find (core/store_sqlite.c includes sqlite3.h)"
else
	nok "core/store_sqlite.c does not include sqlite3.h: update this test"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
