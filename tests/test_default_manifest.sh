#!/bin/sh
# tests/test_default_manifest.sh — the system-wide default manifest
# (core/envdb.yaml.in, installed as $(sysconfdir)/envdb/envdb.yaml) and
# `envdb --manifest FILE init`, which sets up the deployment an existing
# manifest describes.  The template is rendered as the build renders it, with
# a temporary state directory, and driven with the built envdb and plugins:
# manifest check; init creates the control plane and a first key in the
# state directory and writes nothing next to the manifest; init again is a
# no-op; org provision and resolve work; --plugin-dir is refused there.
# Prints one line per check and "N passed, N failed".
set -u
build=${ENVDB_TEST_BUILDDIR:?ENVDB_TEST_BUILDDIR is not set (run through make check)}
src=${ENVDB_TEST_SRCDIR:?ENVDB_TEST_SRCDIR is not set (run through make check)}
envdb=$build/core/envdb
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $*"; }
nok() { fail=$((fail + 1)); echo "FAIL - $*"; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
unset ENVDB_MANIFEST

mkdir -p "$tmp/etc/envdb" "$tmp/state"
chmod 700 "$tmp/state"
sed -e "s|@ENVDB_STATEDIR@|$tmp/state|g" -e "s|@ENVDB_CONFDIR@|$tmp/etc/envdb|g" \
	-e "s|@ENVDB_PLUGINDIR@|$ENVDB_PLUGIN_DIR|g" -e 's|@VERSION@|test|g' \
	"$src/core/envdb.yaml.in" >"$tmp/etc/envdb/envdb.yaml"
m=$tmp/etc/envdb/envdb.yaml
if grep -q '@[A-Z_]*@' "$m"; then nok "placeholders left: $(grep '@[A-Z_]*@' "$m")"; fi

run() { # run DESCRIPTION EXPECTED-EXIT COMMAND...
	what=$1 want=$2
	shift 2
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" -eq "$want" ]; then ok "$what"; else nok "$what: exit $rc, expected $want: $out"; fi
}

run "envdb manifest check on the default manifest" 0 "$envdb" manifest check "$m"
run "envdb --manifest FILE init" 0 "$envdb" --manifest "$m" init
echo "$out" | sed 's/^/#   /'
[ -f "$tmp/state/control.db" ] && ok "control plane in the state directory" ||
	nok "no $tmp/state/control.db"
[ -s "$tmp/state/keyring/current" ] && ok "a current key in the state directory" ||
	nok "no current key in $tmp/state/keyring"
[ -d "$tmp/state/environments" ] && ok "environments/ in the state directory" ||
	nok "no $tmp/state/environments"
extra=$(ls -A "$tmp/etc/envdb" | grep -vx envdb.yaml)
[ -z "$extra" ] && ok "nothing written next to the manifest" ||
	nok "init wrote next to the manifest: $extra"
mode=$(stat -c %a "$tmp/state/keyring")
[ "$mode" = 700 ] && ok "keyring is 0700" || nok "keyring is $mode"
key=$(cat "$tmp/state/keyring/current")
run "init again" 0 "$envdb" --manifest "$m" init
[ "$(cat "$tmp/state/keyring/current")" = "$key" ] && [ "$(ls "$tmp/state/keyring" | wc -l)" -eq 2 ] &&
	ok "init again keeps the key" || nok "init again changed the keyring"
echo "$out" | grep -q '^exists *control plane' && ok "init again reports the control plane as existing" ||
	nok "init again: $out"
run "--plugin-dir is refused with --manifest FILE" 64 "$envdb" --manifest "$m" init --plugin-dir /x
run "org provision on the default manifest" 0 "$envdb" --manifest "$m" org provision acme --by alice
run "resolve on the default manifest" 0 "$envdb" --manifest "$m" resolve acme/prod --user alice
echo "$out" | grep -q "url  *file:$tmp/state/environments/env_" && ok "the database lives in the state directory" ||
	nok "resolve: $out"
run "check on the default manifest" 0 "$envdb" --manifest "$m" check

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
