#!/bin/sh
# bench/run-bench.sh — the driver of `make bench`: runs every benchmark
# program with the plugins of the build tree, then bench/bench_report,
# which prints the merged table and writes bench/results.json (machine,
# commit, command, every figure with its floor and target).
#
# Usage: run-bench.sh BUILDDIR SRCDIR PROGRAM...
#   (PROGRAM relative to BUILDDIR, e.g. bench/bench_resolve)
# Environment: ENVDB_BENCH_ONLY="resolve scale" runs only the programs whose
# name contains one of the words; ENVDB_BENCH_STRICT=1 makes a missed target
# fail; ENVDB_BENCH_RUNS, ENVDB_BENCH_QUICK, ENVDB_BENCH_KEEP and TMPDIR are
# passed on (bench/bench.h).
# Exit status: 0 when every program ran (and, with ENVDB_BENCH_STRICT=1,
# every target was met), 1 otherwise.
set -u

builddir=$1
srcdir=$2
shift 2

results="$builddir/bench/results.d"
rm -rf "$results"
mkdir -p "$results" || exit 1

commit=unknown
if command -v git >/dev/null 2>&1 &&
   c=$(git -C "$srcdir" rev-parse HEAD 2>/dev/null); then
	commit=$c
	if [ -n "$(git -C "$srcdir" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
		commit="$commit+modified"
	fi
fi

ENVDB_PLUGIN_DIR="$builddir/plugins/.libs"
ENVDB_BENCH_RESULTS_DIR=$results
ENVDB_BENCH_COMMIT=$commit
export ENVDB_PLUGIN_DIR ENVDB_BENCH_RESULTS_DIR ENVDB_BENCH_COMMIT

fail=0
ran=
start=$(date +%s)
for prog in "$@"; do
	name=$(basename "$prog")
	if [ -n "${ENVDB_BENCH_ONLY:-}" ]; then
		keep=no
		for w in $ENVDB_BENCH_ONLY; do
			case $name in *"$w"*) keep=yes ;; esac
		done
		[ $keep = yes ] || continue
	fi
	echo "== $name"
	t0=$(date +%s)
	(cd "$builddir" && "./$prog")
	rc=$?
	t1=$(date +%s)
	echo "== $name: exit $rc, $((t1 - t0)) s"
	if [ ! -f "$results/$name.json" ]; then
		echo "== $name: FAILED (no results)"
		fail=1
	elif [ $rc -ge 2 ]; then
		echo "== $name: FAILED (exit $rc)"
		fail=1
	fi
	ran="$ran $name"
done
end=$(date +%s)

echo
"$builddir/bench/bench_report" "$results" "$builddir/bench/results.json" \
	"$((end - start))" "make bench" $ran
rc=$?
if [ $rc -eq 1 ] && [ "${ENVDB_BENCH_STRICT:-0}" = 1 ]; then
	fail=1
elif [ $rc -ge 2 ]; then
	fail=1
fi
exit $fail
