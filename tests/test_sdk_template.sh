#!/bin/sh
# tests/test_sdk_template.sh — the SDK as a third-party plugin author gets
# it, end to end:
#  1. copy this tree's distributed files (`make distdir`, so it does not
#     matter whether the tree is configured in place or where it is built),
#     configure the copy with --prefix=TMP/prefix and `make install`;
#     check what is installed: the ABI headers, envdb-plugin.pc (compile
#     flags only, plugindir, ABI version), libenvdb.pc (a program embedding
#     the library builds and runs with it), envdb-conformance, the documents,
#     the plugin template with its tests (PREFIX/share/envdb/template);
#  2. copy the *installed* template out of the prefix and build it with
#     nothing but pkg-config (PKG_CONFIG_PATH=TMP/prefix/lib/pkgconfig):
#     `autoreconf -fi`, then `./configure && make`, `make check` (its unit
#     test, and the installed conformance kit on the built module), `make
#     install` (into the plugindir the SDK names), a DESTDIR install and
#     `make distcheck`;
#  3. build the installed template again with plain `cc -shared -fPIC` and
#     its linker version script (no libtool, no autotools): only the entry
#     symbol is exported and the installed kit passes it;
#  4. load the installed plugin through a manifest, with the installed
#     `envdb plugins` and `envdb-conformance --manifest`: it must pass.
# Skips (77) when autoreconf, pkg-config or a C compiler is missing.
set -u

build=${ENVDB_TEST_BUILDDIR:?ENVDB_TEST_BUILDDIR is not set}
for tool in autoreconf pkg-config make cc; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "skip: $tool not found"
		exit 77
	fi
done
# A clean make, not a sub-make of the suite's.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES ENVDB_PLUGIN_DIR
tmp=$(mktemp -d "${TMPDIR:-/tmp}/envdb-sdk-test.XXXXXX") || exit 99
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
prefix="$tmp/prefix"
failed=0

ok() { echo "ok - $*"; }
fail() {
	echo "FAIL - $*"
	failed=$((failed + 1))
}
# step NAME LOG CMD...: run CMD with its output in LOG; on failure show the
# end of LOG and stop (later steps depend on it).
step() {
	name=$1 log=$2
	shift 2
	if "$@" >"$log" 2>&1; then
		ok "$name"
	else
		fail "$name (last lines of $log:)"
		tail -n 40 "$log" | sed 's/^/    /'
		exit 1
	fi
}
expect() {
	if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: got '$2', expected '$3'"; fi
}

# ---- 1. install envdb into a temporary prefix ------------------------------
# A clean copy to configure: configuring the source tree itself again fails
# when it is already configured in place ("source directory already
# configured"), and its own build must not be disturbed.
src="$tmp/src"
step "make distdir (a clean copy of the sources)" "$tmp/distdir.log" \
	make -C "$build" distdir distdir="$src" top_distdir="$src"
chmod -R u+w "$src"
[ -f "$src/COPYING" ] && grep -q '^MIT License' "$src/COPYING" ||
	fail "the distributed files have no COPYING (MIT license)"
mkdir "$tmp/build"
cd "$tmp/build" || exit 99
step "configure envdb --prefix=$prefix" "$tmp/configure.log" \
	"$src/configure" -q --prefix="$prefix" --disable-plugin-postgres --disable-plugin-turso \
	CFLAGS="-O0 -g0"
step "make install" "$tmp/install.log" make -j2 install

for f in include/envdb/status.h include/envdb/plugin.h include/envdb/adapter.h \
	include/envdb/encryptor.h include/envdb/envdb.h include/envdb/envdb-loader.h \
	lib/pkgconfig/envdb-plugin.pc \
	lib/pkgconfig/libenvdb.pc bin/envdb-conformance bin/envdb share/doc/envdb/ABI.md \
	share/doc/envdb/CHANGELOG-ABI.md share/doc/envdb/WRITING-A-PLUGIN.md \
	lib/envdb/plugins-1/sqlite.so; do
	[ -e "$prefix/$f" ] || fail "installed: $f is missing"
done
[ -e "$prefix/lib/envdb/plugins-1/sqlite.la" ] && fail "installed: plugin .la files are left"
ok "installed files"
# The template, as the source tree has it (minus its .gitignore).
tpl="$prefix/share/envdb/template"
missing=0
for f in configure.ac Makefile.am README.md example-manifest.yaml src/dirdb.c src/exports.map \
	tests/test_dirdb.c tests/mini_host.c tests/mini_host.h tests/conformance.sh; do
	if ! cmp -s "$src/sdk/template/$f" "$tpl/$f"; then
		fail "installed template: $f is missing or differs from sdk/template/$f"
		missing=1
	fi
done
[ -x "$tpl/tests/conformance.sh" ] || fail "installed template: tests/conformance.sh is not executable"
[ -e "$tpl/.gitignore" ] && fail "installed template: .gitignore is installed"
[ "$missing" -eq 0 ] && ok "installed template: every file of sdk/template in $tpl"

PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
export PKG_CONFIG_PATH
pc() { pkg-config "$@" 2>&1 | sed 's/[[:space:]]*$//'; }
expect "envdb-plugin.pc: Cflags" "$(pc --cflags envdb-plugin)" "-I$prefix/include"
expect "envdb-plugin.pc: no Libs (plugins do not link libenvdb)" "$(pc --libs envdb-plugin)" ""
expect "envdb-plugin.pc: plugindir" "$(pc --variable=plugindir envdb-plugin)" \
	"$prefix/lib/envdb/plugins-1"
expect "envdb-plugin.pc: abi_major" "$(pc --variable=abi_major envdb-plugin)" "1"
expect "envdb-plugin.pc: abi_version" "$(pc --variable=abi_version envdb-plugin)" \
	"$(sed -n 's/^#define ENVDB_ABI_MAJOR \([0-9]*\)$/\1/p' "$src/sdk/include/envdb/plugin.h").$(sed -n 's/^#define ENVDB_ABI_MINOR \([0-9]*\)$/\1/p' "$src/sdk/include/envdb/plugin.h")"
expect "envdb-plugin.pc: conformance" "$(pc --variable=conformance envdb-plugin)" \
	"$prefix/bin/envdb-conformance"
expect "envdb-plugin.pc: templatedir" "$(pc --variable=templatedir envdb-plugin)" "$tpl"

# A program that embeds the library, built with libenvdb.pc only.
cat >"$tmp/embed.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <envdb/envdb.h>
int main(void)
{
	printf("%s %s\n", envdb_version(), envdb_status_str(ENVDB_ERR_EXISTS));
	return strlen(envdb_version()) > 0 ? 0 : 1;
}
EOF
# shellcheck disable=SC2046
if cc -o "$tmp/embed" "$tmp/embed.c" $(pkg-config --cflags --libs libenvdb) >"$tmp/embed.log" 2>&1 &&
	LD_LIBRARY_PATH="$prefix/lib" "$tmp/embed" >>"$tmp/embed.log" 2>&1; then
	ok "libenvdb.pc: a program embedding libenvdb builds and runs ($(tail -n 1 "$tmp/embed.log"))"
else
	fail "libenvdb.pc: embedding program:"
	sed 's/^/    /' "$tmp/embed.log"
fi

# A host of its own on the loader interface (what envdb-conformance is
# built on): open the installed sqlite plugin as a command line would.
cat >"$tmp/loader.c" <<'EOF'
#include <stdio.h>
#include <envdb/envdb-loader.h>
int main(int argc, char **argv)
{
	const char *keys[] = {"base_dir"}, *values[] = {"/tmp/envdb-loader-test"};
	envdb_loader *l = NULL;

	if (argc != 2 || envdb_loader_open_file(&l, argv[1], NULL, ENVDB_PLUGIN_ADAPTER, keys,
						values, 1) != ENVDB_OK) {
		fprintf(stderr, "%s\n", envdb_error_last()->message);
		return 1;
	}
	printf("%s %s %u.%u\n", envdb_loader_name(l), envdb_loader_descriptor(l)->version,
	       envdb_loader_descriptor(l)->abi_major, envdb_loader_descriptor(l)->abi_minor);
	envdb_loader_close(l);
	return 0;
}
EOF
# shellcheck disable=SC2046
if cc -std=c11 -o "$tmp/loader" "$tmp/loader.c" $(pkg-config --cflags --libs libenvdb) \
	>"$tmp/loader.log" 2>&1 &&
	LD_LIBRARY_PATH="$prefix/lib" "$tmp/loader" "$prefix/lib/envdb/plugins-1/sqlite.so" \
		>>"$tmp/loader.log" 2>&1 && grep -q '^sqlite ' "$tmp/loader.log"; then
	ok "envdb-loader.h: a host built on the installed loader interface opens sqlite.so ($(tail -n 1 "$tmp/loader.log"))"
else
	fail "envdb-loader.h: the loader interface program:"
	sed 's/^/    /' "$tmp/loader.log"
fi

# ---- 2. the installed template, out of tree, against the installed SDK ----
# As an author starts: a copy of what envdb installed, found with pkg-config.
cp -R "$(pkg-config --variable=templatedir envdb-plugin)" "$tmp/myplugin"
chmod -R u+w "$tmp/myplugin"
cd "$tmp/myplugin" || exit 99
step "template: autoreconf -fi" "$tmp/t-autoreconf.log" autoreconf -fi
mkdir build
cd build || exit 99
step "template: ./configure" "$tmp/t-configure.log" ../configure
expect "template: plugindir taken from envdb-plugin.pc" \
	"$(sed -n 's/^plugindir = //p' Makefile)" "$prefix/lib/envdb/plugins-1"
step "template: make" "$tmp/t-make.log" make
step "template: make check (unit test + envdb-conformance)" "$tmp/t-check.log" make check
if grep -q '^PASS: tests/conformance.sh' "$tmp/t-check.log"; then
	ok "template: the conformance kit ran and passed in make check"
else
	fail "template: tests/conformance.sh did not PASS in make check:"
	cat tests/conformance.sh.log 2>/dev/null | grep -v '^ok - ' | sed 's/^/    /'
fi
step "template: make install" "$tmp/t-install.log" make install
[ -f "$prefix/lib/envdb/plugins-1/dirdb.so" ] || fail "template: dirdb.so not in the plugindir"
[ -e "$prefix/lib/envdb/plugins-1/dirdb.la" ] && fail "template: dirdb.la left in the plugindir"
step "template: make install DESTDIR=..." "$tmp/t-destdir.log" make install DESTDIR="$tmp/stage"
[ -f "$tmp/stage$prefix/lib/envdb/plugins-1/dirdb.so" ] ||
	fail "template: DESTDIR install did not stage dirdb.so"
step "template: make distcheck" "$tmp/t-distcheck.log" make distcheck

# ---- 3. the installed template, with plain cc and a version script --------
cp -R "$tpl" "$tmp/plaincc"
chmod -R u+w "$tmp/plaincc"
cd "$tmp/plaincc" || exit 99
# shellcheck disable=SC2046
step "plain cc: cc -shared -fPIC -Wl,--version-script=src/exports.map" "$tmp/p-cc.log" \
	cc -std=c11 -O2 -Wall -Wextra -Wno-unused-parameter -Werror -shared -fPIC -fvisibility=hidden \
	$(pkg-config --cflags envdb-plugin) -Wl,--version-script=src/exports.map \
	-o dirdb.so src/dirdb.c
if command -v nm >/dev/null 2>&1; then
	expect "plain cc: the only exported symbol is the entry" \
		"$(nm -D --defined-only dirdb.so | awk '$2 ~ /^[A-Z]$/ { print $3 }' | tr '\n' ' ')" \
		"envdb_plugin_entry_v1 "
fi
if "$prefix/bin/envdb-conformance" --plugin-path ./dirdb.so --kind adapter \
	--config directory="$tmp/plaincc-root" >"$tmp/p-kit.log" 2>&1; then
	ok "plain cc: the installed envdb-conformance passes dirdb.so ($(tail -n 1 "$tmp/p-kit.log"))"
else
	fail "plain cc: envdb-conformance does not pass dirdb.so:"
	grep -v '^ok - ' "$tmp/p-kit.log" | sed 's/^/    /'
fi

# ---- 4. load it through a manifest -----------------------------------------
mkdir "$tmp/deploy"
cat >"$tmp/deploy/envdb.yaml" <<'EOF'
version: 1
control_plane: control.db
plugins:
  - name: dirdb
    kind: adapter
    config:
      directory: environments
EOF
# No plugin_dir, no ENVDB_PLUGIN_DIR: the installed envdb looks in its own
# plugin directory, which is where the template installed itself.
if "$prefix/bin/envdb" --manifest "$tmp/deploy/envdb.yaml" plugins >"$tmp/plugins.log" 2>&1 &&
	grep -q '^dirdb ' "$tmp/plugins.log"; then
	ok "envdb plugins: lists dirdb from the installed plugin directory"
else
	fail "envdb plugins does not list dirdb:"
	sed 's/^/    /' "$tmp/plugins.log"
fi
if "$prefix/bin/envdb-conformance" --manifest "$tmp/deploy/envdb.yaml" --plugin dirdb \
	>"$tmp/conformance.log" 2>&1; then
	ok "envdb-conformance --manifest: dirdb passes ($(tail -n 1 "$tmp/conformance.log"))"
else
	fail "envdb-conformance --manifest: dirdb does not pass:"
	grep -v '^ok - ' "$tmp/conformance.log" | sed 's/^/    /'
fi

echo "$failed failed"
[ "$failed" -eq 0 ]
