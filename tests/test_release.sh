#!/bin/sh
# tests/test_release.sh — failpoints are absent from release builds.
#
# Always: the probe archive tests/librelease_probe.la holds every core file
# that names a failpoint, compiled as a release build (ENVDB_NO_FAILPOINTS,
# whatever configure said); neither `strings` nor `nm` may find a failpoint
# name or the failpoint evaluator in it.  When this tree itself was
# configured without --enable-failpoints, the installed artefacts
# (libenvdb.so and the envdb program) are checked the same way; in a
# failpoint build libenvdb.so is checked to HAVE every name (the control
# that shows the search would see them).
set -u
: "${ENVDB_TEST_BUILDDIR:?run through make check}"
: "${ENVDB_TEST_SRCDIR:?run through make check}"
b=$ENVDB_TEST_BUILDDIR
names=$(sed -n 's/^[[:space:]]*X("\([^"]*\)".*/\1/p' "$ENVDB_TEST_SRCDIR/core/failpoint.h")
n=$(echo "$names" | wc -l)
[ "$n" -ge 30 ] || { echo "FAIL: only $n failpoint names parsed from core/failpoint.h"; exit 1; }
command -v strings >/dev/null && command -v nm >/dev/null ||
	{ echo "SKIP: strings/nm (binutils) not installed"; exit 77; }

list=$(mktemp) || exit 1
trap 'rm -f "$list"' EXIT
echo "$names" > "$list"
# the failpoint names among the strings of FILE, and the evaluator's symbol
hits() {
	strings -a "$1" | grep -F -x -f "$list" | sort -u
	nm -A "$1" 2>/dev/null | grep -E 'envdbi_failpoint_hit' || true
}

fail=0
probe=$b/tests/.libs/librelease_probe.a
[ -f "$probe" ] || { echo "FAIL: $probe not built"; exit 1; }
h=$(hits "$probe")
if [ -n "$h" ]; then
	echo "FAIL: release-form objects carry failpoints:"; echo "$h" | head; fail=1
else
	echo "ok: release-form core objects: none of $n failpoint names, no evaluator"
fi

lib=$(ls "$b"/core/.libs/libenvdb.so.*.*.* 2>/dev/null | head -1)
cli=$b/core/.libs/envdb
[ -f "$cli" ] || cli=$b/core/.libs/lt-envdb
if grep -q '^#define ENVDB_FAILPOINTS 1' "$b/config.h"; then
	for f in "$lib"; do
		[ -f "$f" ] || continue
		c=$(hits "$f" | wc -l)
		if [ "$c" -lt "$n" ]; then
			echo "FAIL: failpoint build $f shows only $c of $n names (the probe is blind)"; fail=1
		else
			echo "ok: failpoint build $f carries the names (control)"
		fi
	done
else
	for f in "$lib" "$cli"; do
		[ -f "$f" ] || continue
		h=$(hits "$f")
		if [ -n "$h" ]; then
			echo "FAIL: release build $f carries failpoints:"; echo "$h" | head; fail=1
		else
			echo "ok: release build $f: no failpoint name, no evaluator"
		fi
	done
fi
exit $fail
