#!/bin/sh
# tests/fuzz/smoke.sh [BUILDDIR] — the short fuzzing run of the test
# command: configures a clang fuzzing tree (CC=clang --enable-fuzzing) in
# BUILDDIR (default _build/fuzz of the source tree) unless one is there,
# builds the harnesses and runs each for FUZZ_SECONDS (default 10).
# Exits 0 when no harness crashed; 77 (skip) when clang is missing.
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
b=${1:-$src/_build/fuzz}
secs=${FUZZ_SECONDS:-10}
if ! command -v clang >/dev/null 2>&1; then
	echo "fuzz smoke: SKIP: clang not installed (.ci/deps installs clang libclang-rt-14-dev)"
	exit 77
fi
mkdir -p "$b"
cd "$b"
[ -f Makefile ] || "$src/configure" -q CC=clang --enable-fuzzing
exec make -j"${JOBS:-2}" -s fuzz FUZZ_SECONDS="$secs"
