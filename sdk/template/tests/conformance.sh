#!/bin/sh
# tests/conformance.sh — run the envdb conformance kit on the freshly built
# module: descriptor, create/drop/list/probe semantics, credentials,
# ownership, secrets, threads.  Skipped (exit 77) when envdb-conformance is
# not installed.
kit=${ENVDB_CONFORMANCE:-}
module=${DIRDB_MODULE:-.libs/dirdb.so}
if [ -z "$kit" ] || [ ! -x "$kit" ]; then
	echo "envdb-conformance not found: skipping (install envdb, or configure ENVDB_CONFORMANCE=PATH)"
	exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dirdb-conformance.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM
"$kit" --plugin-path "$module" --kind adapter --config directory="$tmp/root"
