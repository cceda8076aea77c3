#!/bin/sh
# tests/turso-setup.sh — install the local libSQL HTTP server the Turso
# adapter's tests run against: `tursodb` from the npm package
# @tursodatabase/cli-linux-x64-gnu@0.6.0, into a project-local prefix
# (never globally).  Prints the path of the tursodb binary on stdout (npm's
# output goes to stderr), so that a test command can do
#     ENVDB_TURSODB=$(sh tests/turso-setup.sh "$builddir/.npm-turso")
# Idempotent: an existing install is reused.  Exits non-zero, with a
# message on stderr, when npm or the package is not available; the tests
# then skip (exit 77).
#
# Usage: turso-setup.sh [PREFIX]   (default: ./.npm-turso)
set -eu
pkg=@tursodatabase/cli-linux-x64-gnu
version=0.6.0
prefix=${1:-.npm-turso}
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
bin="$prefix/node_modules/$pkg/tursodb"

installed_version() {
	node -e 'process.stdout.write(require(process.argv[1]).version)' \
		"$prefix/node_modules/$pkg/package.json" 2>/dev/null || true
}

if [ ! -x "$bin" ] || [ "$(installed_version)" != "$version" ]; then
	case "$(uname -s)-$(uname -m)" in
	Linux-x86_64) ;;
	*) echo "turso-setup: $pkg only runs on Linux x86-64" >&2; exit 1 ;;
	esac
	if ! command -v npm >/dev/null 2>&1; then
		echo "turso-setup: npm not found (Debian package npm)" >&2
		exit 1
	fi
	echo "turso-setup: installing $pkg@$version into $prefix" >&2
	npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error \
		"$pkg@$version" >&2
fi
if [ ! -x "$bin" ]; then
	echo "turso-setup: $bin missing after install" >&2
	exit 1
fi
# It must run here (glibc, x86-64): `tursodb --version` prints "Turso 0.6.0".
if ! "$bin" --version >/dev/null 2>&1; then
	echo "turso-setup: $bin does not run on this machine" >&2
	exit 1
fi
printf '%s\n' "$bin"
