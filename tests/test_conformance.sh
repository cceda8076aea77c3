#!/bin/sh
# tests/test_conformance.sh — the conformance kit in the test suite:
#  1. every in-tree plugin passes envdb-conformance (one line per plugin
#     below: add a plugin by adding its line);
#  2. the control fixture passes, and every broken_* fixture fails with the
#     specific FAIL line its breakage must produce;
#  3. --manifest on a live deployment is refused without --live.
# Environment (tests/Makefile.inc): ENVDB_TEST_BUILDDIR, ENVDB_PLUGIN_DIR.
set -u

build=${ENVDB_TEST_BUILDDIR:?ENVDB_TEST_BUILDDIR is not set}
kit="$build/sdk/envdb-conformance"
plugins=${ENVDB_PLUGIN_DIR:-$build/plugins/.libs}
fixtures="$build/tests/fixtures/.libs"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/envdb-conformance-test.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM
failed=0
ran=0

# Run the kit on one plugin file; its output goes to $tmp/NAME.out.
kit_run() {
	name=$1 kind=$2 file=$3
	shift 3
	"$kit" --plugin-path "$file" --kind "$kind" --threads 4 --iterations 4 "$@" \
		>"$tmp/$name.out" 2>&1
}

# passes NAME KIND [--config KEY=VALUE ...]: an in-tree plugin must pass.
# With $via set, the kit runs under that launcher (which provides the
# plugin's backend; its exit status 77 means "no backend here": skip).
via=""
passes() {
	name=$1 kind=$2
	shift 2
	file="$plugins/$name.so"
	if [ ! -f "$file" ]; then
		echo "skip - $name: $file not built"
		return 0
	fi
	# shellcheck disable=SC2086
	$via "$kit" --plugin-path "$file" --kind "$kind" --threads 4 --iterations 4 "$@" \
		>"$tmp/$name.out" 2>&1
	rc=$?
	if [ $rc -eq 77 ] && [ -n "$via" ]; then
		echo "skip - $name: no backend ($(tail -n 1 "$tmp/$name.out"))"
		return 0
	fi
	ran=$((ran + 1))
	if [ $rc -eq 0 ]; then
		echo "ok - $name passes: $(tail -n 1 "$tmp/$name.out")"
	else
		echo "FAIL - $name does not pass the conformance kit:"
		grep -v '^ok - ' "$tmp/$name.out" | sed 's/^/    /'
		failed=$((failed + 1))
	fi
}

# fails NAME KIND PATTERN...: a fixture must fail (exit 1), with a line
# matching each extended regular expression PATTERN.
fails() {
	name=$1 kind=$2
	shift 2
	ran=$((ran + 1))
	# A broken fixture may leak on purpose (broken_secure_leak): under
	# AddressSanitizer, LeakSanitizer must not turn the kit's verdict into
	# an abort.
	saved_asan=${ASAN_OPTIONS-}
	ASAN_OPTIONS="${saved_asan:+$saved_asan:}detect_leaks=0"
	export ASAN_OPTIONS
	kit_run "$name" "$kind" "$fixtures/$name.so"
	rc=$?
	ASAN_OPTIONS=$saved_asan
	if [ $rc -ne 1 ]; then
		echo "FAIL - $name: the kit exited with $rc, expected 1 (a failed check):"
		sed 's/^/    /' "$tmp/$name.out"
		failed=$((failed + 1))
		return
	fi
	for pattern in "$@"; do
		if ! grep -Eq "$pattern" "$tmp/$name.out"; then
			echo "FAIL - $name: no line matches /$pattern/; the kit said:"
			grep -v '^ok - ' "$tmp/$name.out" | sed 's/^/    /'
			failed=$((failed + 1))
			return
		fi
	done
	echo "ok - $name fails as it must: $(grep -E "$1" "$tmp/$name.out" | head -n 1)"
}

if [ ! -x "$kit" ]; then
	echo "FAIL - $kit is not built"
	exit 1
fi

# ---- 1. in-tree plugins ---------------------------------------------------
passes sqlite adapter --config base_dir="$tmp/sqlite"
passes kms encryptor --config keyring_dir="$tmp/kms"
# Plugins with a server: a launcher starts a throwaway one and exports where
# it is.  postgres: tests/pg_exec (a local cluster, ENVDB_TEST_PG_ADMIN).
if [ -x "$build/tests/pg_exec" ]; then
	via="$build/tests/pg_exec"
	passes postgres adapter --config admin_conninfo_env=ENVDB_TEST_PG_ADMIN
	via=""
else
	echo "skip - postgres: tests/pg_exec not built"
fi
# turso: tests/turso_exec (the Platform API emulator in front of a real
# libSQL server; @TURSO_API_URL@ becomes the emulator's URL).
if [ -x "$build/tests/turso_exec" ]; then
	via="$build/tests/turso_exec"
	passes turso adapter --config organization=acme \
		--config api_token_env=ENVDB_TEST_TURSO_TOKEN --config api_url=@TURSO_API_URL@ \
		--config data_plane_scheme=http --config retry_initial_delay=50ms \
		--config retry_max_delay=400ms --config max_attempts=4
	via=""
else
	echo "skip - turso: tests/turso_exec not built"
fi

# ---- 2. fixtures ----------------------------------------------------------
ran=$((ran + 1))
if kit_run broken_none adapter "$fixtures/broken_none.so"; then
	echo "ok - broken_none (the control) passes"
else
	echo "FAIL - broken_none (the control) does not pass:"
	grep -v '^ok - ' "$tmp/broken_none.out" | sed 's/^/    /'
	failed=$((failed + 1))
fi
fails broken_keep_pointer adapter \
	'^FAIL - ownership: .*list reported a name made of a borrowed string.*pointer kept past its call'
fails broken_rotate adapter \
	'^FAIL - rotate: mint with previous_handle gives a new credential: the new secret equals the previous one$'
fails broken_secret_in_error adapter \
	'^FAIL - secrets: .*error message during probe contains the secret minted by mint\(full_access\)'
fails broken_secure_leak adapter \
	'^FAIL - secure memory: [0-9]+ host->secure_alloc block\(s\) never released' \
	'^FAIL - secrets: .*host->alloc block holds the secret minted by mint\(full_access\)'
fails broken_not_idempotent adapter \
	'^FAIL - drop: dropping twice is success: ENVDB_ERR_NOT_FOUND' \
	'^FAIL - errors: .*create returned ENVDB_ERR_EXISTS without reporting it through host->error'
fails broken_stdout adapter \
	'^FAIL - standard output: [0-9]+ problem.*mint wrote [0-9]+ byte\(s\) to standard output \("minting a credential'
fails broken_extra_symbol adapter \
	'^FAIL - exports: only the entry symbol: .*also exports 1 symbol\(s\): broken_helper_visible'
fails broken_list_foreign adapter \
	"^FAIL - list: reports nothing the kit did not make: after creating only 'mem_[0-9a-f-]+', list also reported 'other_application_db', which the kit did not create"
fails broken_create_then_size adapter \
	'^FAIL - create: a too-small buffer leaves nothing behind: after ENVDB_ERR_BUFFER_TOO_SMALL, the create with large enough buffers answered ENVDB_ERR_EXISTS'
fails broken_expiry_ignored adapter \
	'^FAIL - expiry: an expired credential is refused \(CAP_EXPIRY\): probe [0-9]+ s after its expires_at: ENVDB_OK'
fails broken_aad_ignored encryptor \
	'^FAIL - decrypt: wrong associated data is INTEGRITY: with another row.s aad: ENVDB_OK'

# ---- 3. --manifest on a live deployment ------------------------------------
# A manifest whose control plane exists is a live deployment: the kit
# refuses (exit 2) with a warning naming the control plane and where the
# plugin's configuration points, and touches nothing; --live goes on; a
# manifest whose control plane does not exist yet runs without a word.
mkdir "$tmp/live"
cat >"$tmp/live/envdb.yaml" <<EOF
version: 1
control_plane: control.db
plugin_dir: $plugins
plugins:
  - name: sqlite
    kind: adapter
    config:
      base_dir: environments
EOF
ran=$((ran + 1))
if [ -f "$plugins/sqlite.so" ]; then
	"$kit" --manifest "$tmp/live/envdb.yaml" --plugin sqlite --iterations 2 \
		>"$tmp/live-scratch.out" 2>"$tmp/live-scratch.err"
	rc=$?
	if [ $rc -eq 0 ] && ! grep -q WARNING "$tmp/live-scratch.err"; then
		echo "ok - --manifest without a control plane runs without a warning"
	else
		echo "FAIL - --manifest without a control plane: exit $rc:"
		sed 's/^/    /' "$tmp/live-scratch.err"
		failed=$((failed + 1))
	fi
	rm -rf "$tmp/live/environments"
	: >"$tmp/live/control.db"
	ran=$((ran + 1))
	"$kit" --manifest "$tmp/live/envdb.yaml" --plugin sqlite >"$tmp/live.out" 2>"$tmp/live.err"
	rc=$?
	if [ $rc -eq 2 ] &&
		grep -qF "WARNING: $tmp/live/envdb.yaml is a live deployment: its control plane $tmp/live/control.db exists" "$tmp/live.err" &&
		grep -qF "creates and drops scratch databases with the configuration the manifest gives plugin sqlite" "$tmp/live.err" &&
		grep -qF "base_dir: environments" "$tmp/live.err" &&
		grep -qF "refusing to run there without --live" "$tmp/live.err" &&
		[ ! -e "$tmp/live/environments" ] && ! grep -q '^ok - ' "$tmp/live.out"; then
		echo "ok - --manifest on a live deployment: refused with a warning naming it, nothing touched"
	else
		echo "FAIL - --manifest on a live deployment: exit $rc (expected 2), stderr:"
		sed 's/^/    /' "$tmp/live.err"
		ls "$tmp/live" | sed 's/^/    ls: /'
		failed=$((failed + 1))
	fi
	ran=$((ran + 1))
	"$kit" --manifest "$tmp/live/envdb.yaml" --plugin sqlite --live --iterations 2 \
		>"$tmp/live2.out" 2>"$tmp/live2.err"
	rc=$?
	if [ $rc -eq 0 ] && grep -q "WARNING: .* is a live deployment" "$tmp/live2.err" &&
		grep -qF "going on (--live)" "$tmp/live2.err"; then
		echo "ok - --manifest --live on a live deployment: warns, then runs ($(tail -n 1 "$tmp/live2.out"))"
	else
		echo "FAIL - --manifest --live: exit $rc:"
		sed 's/^/    /' "$tmp/live2.err"
		grep -v '^ok - ' "$tmp/live2.out" | sed 's/^/    /'
		failed=$((failed + 1))
	fi
else
	echo "skip - live deployment: $plugins/sqlite.so not built"
fi

# The kit never prints a secret, even when quoting a leaking plugin.
if grep -Eq '[0-9a-f]{64}' "$tmp/broken_secret_in_error.out"; then
	echo "FAIL - the kit printed a token while reporting broken_secret_in_error"
	failed=$((failed + 1))
else
	echo "ok - the kit masks secrets in what it prints"
fi

echo "$ran runs, $failed failed"
[ "$failed" -eq 0 ]
