#!/bin/sh
# tests/test_readme.sh — the README's examples run as written.
#
# Every ```sh block of README.md preceded by a line "<!-- test -->" is an
# example a user types: they are run in order, line by line, in one shell
# (an `export` carries over to the next line and block), in a new
# directory, with the built envdb first on PATH and no manifest but the ones
# the examples make.  Every line must exit 0 (a line that expects a failure
# says so itself, `|| echo ...`).  Then a few results are checked: the
# reader resolves to a read-only credential, the tsv and JSON examples
# print what the README says they print.
# Prints one line per example and "N passed, N failed".
set -u
build=${ENVDB_TEST_BUILDDIR:?ENVDB_TEST_BUILDDIR is not set (run through make check)}
src=${ENVDB_TEST_SRCDIR:?ENVDB_TEST_SRCDIR is not set (run through make check)}
readme=$src/README.md
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $*"; }
nok() { fail=$((fail + 1)); echo "FAIL - $*"; }

[ -x "$build/core/envdb" ] || { echo "FAIL - $build/core/envdb is not built"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

# The marked blocks, one command a line (a trailing backslash joins lines).
awk '/^<!-- test -->$/ { mark = 1; next }
	mark && /^```sh$/ { on = 1; mark = 0; blocks++; next }
	/^```/ { on = 0; next }
	mark && !/^[ \t]*$/ { mark = 0 }
	on { print }
	END { if (blocks < 2) exit 1 }' "$readme" >"$tmp/examples" ||
	nok "README.md has fewer than two blocks marked <!-- test -->"

mkdir "$tmp/run" || exit 1
cd "$tmp/run" || exit 1
unset ENVDB_MANIFEST
PATH=$build/core:$PATH
export PATH
if [ "$(command -v envdb)" != "$build/core/envdb" ]; then
	nok "the built envdb is first on PATH (found $(command -v envdb))"
fi

n=0
cmd=""
while IFS= read -r line; do
	case $line in
	*\\)
		cmd="$cmd${line%\\} "
		continue
		;;
	esac
	cmd="$cmd$line"
	case $cmd in
	'' | '#'*)
		cmd=""
		continue
		;;
	esac
	n=$((n + 1))
	echo "\$ $cmd" >>"$tmp/transcript"
	# the command's stdin is not the list of examples
	eval "$cmd" </dev/null >"$tmp/out.$n" 2>"$tmp/err.$n"
	rc=$?
	cat "$tmp/out.$n" "$tmp/err.$n" >>"$tmp/transcript"
	if [ "$rc" -eq 0 ]; then
		ok "README example exits 0: $cmd"
	else
		nok "README example exits $rc: $cmd"
		sed 's/^/    /' "$tmp/err.$n"
	fi
	cmd=""
done <"$tmp/examples"
if [ "$n" -ge 20 ]; then
	ok "$n README examples ran"
else
	nok "only $n README examples ran"
fi

# What the examples print.
out_of() { # the stdout of the first example matching $1
	i=$(grep -n -F -- "$1" "$tmp/examples" | head -1 | cut -d: -f1)
	[ -n "$i" ] || return 1
	# example number = non-blank, non-comment lines up to line $i
	k=$(head -n "$i" "$tmp/examples" | grep -c -v -e '^$' -e '^#')
	cat "$tmp/out.$k"
}
if out_of "envdb resolve acme/dev --user bob " | grep -q '^authorization  *read_only$'; then
	ok "the reader bob resolves acme/dev to a read-only credential"
else
	nok "resolve acme/dev --user bob: no read-only credential"
fi
if out_of "envdb --output tsv env list acme" | head -1 | grep -q "^ENVIRONMENT	STATUS$"; then
	ok "the tsv example prints its header line"
else
	nok "the tsv example does not print 'ENVIRONMENT<tab>STATUS' first"
fi
if out_of "envdb -j env show acme/prod" | grep -q '"ref": "acme/prod"' &&
	out_of "envdb -j env show acme/prod" | grep -q '"created_at": "[0-9-]*T[0-9:]*Z"'; then
	ok "the JSON example prints the environment with ISO 8601 times"
else
	nok "the JSON example does not print the environment object"
fi
if out_of "envdb -j resolve acme/nope" | grep -q '"code": "not_found"'; then
	ok "the error example prints {\"error\":{\"code\":\"not_found\",...}}"
else
	nok "the error example does not print code not_found"
fi

[ "$fail" -eq 0 ] || { echo "--- transcript"; cat "$tmp/transcript"; }
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
