#!/bin/sh
# tests/test_debian.sh — the Debian packages, end to end.  Slow (a full
# package build): not in `make check`; .ci/test runs it.
#
#   sh tests/test_debian.sh [WORKDIR]      (default: _build/debian)
#
#  1. a clean copy of the tree: configure a fresh build, `make dist`, unpack
#     the tarball and add debian/ (which the tarball does not carry);
#  2. dpkg-buildpackage -us -uc -b (DEB_BUILD_OPTIONS=nocheck: the suite runs
#     in .ci/test already; ENVDB_DEBTEST_CHECK=1 runs it inside the build);
#  2b. reproducible: the same tarball built again under another path (and
#     another umask) gives byte-identical packages (ENVDB_DEBTEST_REPRO=0
#     skips it);
#  3. lintian on the result: no error and no warning (overrides are in
#     debian/*.lintian-overrides, with their reasons);
#  4. a clean root: the six packages unpacked with dpkg -x, plus exactly the
#     Debian packages their Depends name, recursively, copied from this
#     system's installed files (dpkg -L) -- nothing else, no build tree;
#  5. in that root (chroot, empty environment): envdb --version, the
#     installed plugin directory, `envdb init` of the packaged system-wide
#     manifest and of a new directory, org provision, env provision, member
#     add, resolve (the secret revealed), check, the postgres and turso
#     plugins loaded from their packages, envdb-conformance (envdb-sdk) on
#     the sqlite adapter, `man envdb` documenting every command of
#     `envdb --help`, and the installed bash completion; after the build:
#     envdb-sdk holds the SDK, libenvdb0's symbols file lists exactly what
#     the library exports.
# Needs root (dpkg-buildpackage's build dependencies installed: .ci/deps).
# Prints one line per check and "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$top/_build/debian}
jobs=${JOBS:-2}
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $*"; }
nok() { fail=$((fail + 1)); echo "FAIL - $*"; }
die() {
	echo "FAIL - $*"
	fail=$((fail + 1))
	echo "$pass passed, $fail failed"
	exit 1
}
step() { printf '\n# %s\n' "$*"; }

[ "$(id -u)" -eq 0 ] || { echo "skip - needs root (chroot)"; exit 77; }
[ -d "$top/debian" ] || { echo "skip - no debian/ directory in $top"; exit 77; }
for t in dpkg-buildpackage dh lintian fakeroot chroot; do
	command -v "$t" >/dev/null 2>&1 || die "$t is not installed (sh .ci/deps)"
done
[ -x "$top/configure" ] || die "$top/configure is missing: run autoreconf -fi first"
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
rm -rf "$work"
mkdir -p "$work" || die "cannot create $work"
work=$(cd "$work" && pwd)

# ---- 1. the tarball --------------------------------------------------------
step "make dist"
mkdir -p "$work/dist"
(cd "$work/dist" && "$top/configure" -q && make -s dist) >"$work/dist.log" 2>&1 ||
	{ tail -30 "$work/dist.log"; die "make dist"; }
tarball=$(ls "$work"/dist/envdb-*.tar.gz 2>/dev/null | head -1)
[ -n "$tarball" ] || die "make dist made no envdb-*.tar.gz"
version=$(basename "$tarball" .tar.gz | sed 's/^envdb-//')
ok "make dist: $(basename "$tarball")"
mkdir -p "$work/pkg"
cp "$tarball" "$work/pkg/envdb_$version.orig.tar.gz"
tar -C "$work/pkg" -xzf "$tarball" || die "unpacking $tarball"
srcdir=$work/pkg/envdb-$version
[ ! -e "$srcdir/debian" ] || die "the tarball carries debian/ (it should not)"
# debian/ as in the tree, without what an in-tree build may have left.
(cd "$top" && tar -cf - --exclude=debian/tmp --exclude=debian/.debhelper \
	--exclude='debian/*.substvars' --exclude='debian/*.log' --exclude=debian/files \
	--exclude=debian/debhelper-build-stamp --exclude=debian/envdb \
	--exclude=debian/libenvdb0 --exclude=debian/libenvdb-dev --exclude=debian/envdb-sdk \
	--exclude=debian/envdb-plugin-postgres --exclude=debian/envdb-plugin-turso \
	--exclude=debian/build debian) | tar -C "$srcdir" -xf - ||
	die "copying debian/"

# ---- 2. the packages --------------------------------------------------------
step "dpkg-buildpackage -us -uc -b"
opts="parallel=$jobs"
[ "${ENVDB_DEBTEST_CHECK:-0}" = 1 ] || opts="nocheck $opts"
(cd "$srcdir" && DEB_BUILD_OPTIONS="$opts" dpkg-buildpackage -us -uc -b) \
	>"$work/build.log" 2>&1 || { tail -60 "$work/build.log"; die "dpkg-buildpackage (log: $work/build.log)"; }
changes=$work/pkg/envdb_${version}-1_$arch.changes
[ -f "$changes" ] || die "no $changes"
ok "dpkg-buildpackage -us -uc -b (DEB_BUILD_OPTIONS=$opts)"
debs=""
for p in libenvdb0 libenvdb-dev envdb-sdk envdb envdb-plugin-postgres envdb-plugin-turso; do
	d=$work/pkg/${p}_${version}-1_$arch.deb
	if [ -f "$d" ]; then
		debs="$debs $d"
		ok "package $p: $(dpkg-deb -f "$d" Depends)"
	else
		nok "package $p was not built"
	fi
done
for d in $debs; do
	echo "# $(basename "$d"):"
	dpkg-deb -c "$d" | awk '{ print "#   " $1 " " $6 ($7 ? " " $7 " " $8 : "") }'
done
# The SDK in its own package: the conformance kit and the template there,
# not in libenvdb-dev.
sdk=$work/pkg/envdb-sdk_${version}-1_$arch.deb
dev=$work/pkg/libenvdb-dev_${version}-1_$arch.deb
if [ -f "$sdk" ] && dpkg-deb -c "$sdk" | grep -q ' \./usr/bin/envdb-conformance$' &&
	dpkg-deb -c "$sdk" | grep -q ' \./usr/share/envdb/template/' &&
	dpkg-deb -c "$sdk" | grep -q ' \./usr/share/man/man1/envdb-conformance\.1\.gz$' &&
	! dpkg-deb -c "$dev" | grep -q 'envdb-conformance\|/template/'; then
	ok "envdb-sdk holds envdb-conformance, its man page and the template; libenvdb-dev does not"
else
	nok "envdb-conformance or the template is not (only) in envdb-sdk"
fi
# libenvdb0 carries a symbols file that lists exactly what the library
# exports (debian/libenvdb0.symbols).
lib0=$work/pkg/libenvdb0_${version}-1_$arch.deb
mkdir -p "$work/lib0" && dpkg-deb -e "$lib0" "$work/lib0/DEBIAN" && dpkg-deb -x "$lib0" "$work/lib0"
if [ -f "$work/lib0/DEBIAN/symbols" ]; then
	sed -n 's/^ \([^@ ]*\)@Base .*/\1/p' "$work/lib0/DEBIAN/symbols" | sort >"$work/symbols.listed"
	nm -D --defined-only "$(ls "$work"/lib0/usr/lib/*/libenvdb.so.0.* | head -1)" |
		awk '{ print $3 }' | sort >"$work/symbols.exported"
	if cmp -s "$work/symbols.listed" "$work/symbols.exported"; then
		ok "libenvdb0: symbols file lists the $(wc -l <"$work/symbols.listed") exported symbols"
	else
		nok "libenvdb0: symbols file and exports differ: $(diff "$work/symbols.listed" "$work/symbols.exported" | grep '^[<>]' | tr '\n' ' ')"
	fi
	# envdb-sdk's dependency on the library comes from the symbols file
	# only (envdb's is pinned by debian/control).
	dep=$(dpkg-deb -f "$sdk" Depends)
	case $dep in
	*"libenvdb0 (>= "*) ok "envdb-sdk depends on libenvdb0 through the symbols file: $dep" ;;
	*) nok "envdb-sdk's Depends has no libenvdb0 (>= ...) from the symbols file: $dep" ;;
	esac
else
	nok "libenvdb0 has no symbols control file"
fi

# ---- 2b. reproducible ------------------------------------------------------
if [ "${ENVDB_DEBTEST_REPRO:-1}" = 1 ]; then
	step "reproducible build"
	other=$work/repro/a-different-build-path
	mkdir -p "$other" && tar -C "$other" -xzf "$tarball" &&
		(cd "$srcdir" && tar -cf - debian) | tar -C "$other/envdb-$version" -xf - &&
		rm -rf "$other/envdb-$version/debian/tmp" "$other/envdb-$version/debian/.debhelper" \
			"$other/envdb-$version/debian/files" "$other/envdb-$version/debian/debhelper-build-stamp" \
			"$other/envdb-$version"/debian/*.substvars "$other/envdb-$version"/debian/*.debhelper* &&
		for p in build libenvdb0 libenvdb-dev envdb-sdk envdb envdb-plugin-postgres envdb-plugin-turso; do
			rm -rf "$other/envdb-$version/debian/$p"
		done
	if (cd "$other/envdb-$version" && umask 002 && DEB_BUILD_OPTIONS="nocheck $opts" \
		dpkg-buildpackage -us -uc -b) >"$work/repro.log" 2>&1; then
		differ=""
		for d in "$work"/pkg/*.deb; do
			cmp -s "$d" "$other/$(basename "$d")" || differ="$differ $(basename "$d")"
		done
		[ -z "$differ" ] && ok "reproducible: $(ls "$work"/pkg/*.deb | wc -l) packages byte-identical when built under another path" ||
			nok "not reproducible:$differ"
	else
		tail -30 "$work/repro.log"
		nok "second build (log: $work/repro.log)"
	fi
fi

# ---- 3. lintian -------------------------------------------------------------
step "lintian"
lintian -I --fail-on error,warning "$changes" >"$work/lintian.log" 2>&1
rc=$?
sed 's/^/# /' "$work/lintian.log"
if [ $rc -eq 0 ]; then
	ok "lintian: no error, no warning ($(grep -c '^I: ' "$work/lintian.log") info tags)"
else
	nok "lintian reports errors or warnings (exit $rc)"
fi

# ---- 4. a clean root ------------------------------------------------------
step "clean root"
root=$work/root
mkdir -p "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib" "$root/usr/lib64" "$root/etc" \
	"$root/tmp" "$root/var/tmp" "$root/dev" "$root/srv" "$root/root"
chmod 1777 "$root/tmp" "$root/var/tmp"
for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done # merged /usr
for d in $debs; do
	dpkg -x "$d" "$root" || die "dpkg -x $d"
done
# Our packages' names and what they provide satisfy dependencies by themselves.
ours=$(for d in $debs; do
	dpkg-deb -f "$d" Package
	dpkg-deb -f "$d" Provides | tr ',' '\n' | sed 's/(.*//; s/ //g'
done | sort -u)
providers=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Provides}\n' 2>/dev/null |
	awk '$1 == "ii" { for (i = 3; i <= NF; i++) { p = $i; sub(/,$/, "", p);
		if (p !~ /^\(/ && p !~ /\)$/) print p, $2 } }')
installed() { dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^ii'; }
# One package name for one alternative list "a (>= 1) | b": ours -> "",
# else an installed one (or the installed provider of a virtual one).
choose() {
	echo "$1" | tr '|' '\n' | sed 's/(.*//; s/\[.*//; s/:any//; s/ //g' | while read -r alt; do
		[ -n "$alt" ] || continue
		if echo "$ours" | grep -qx "$alt"; then echo "="; return; fi
		if installed "$alt"; then echo "$alt"; return; fi
		prov=$(echo "$providers" | awk -v p="$alt" '$1 == p { print $2; exit }')
		if [ -n "$prov" ]; then echo "$prov"; return; fi
	done
}
queue=$(for d in $debs; do dpkg-deb -f "$d" Pre-Depends Depends | sed 's/^[A-Za-z-]*: //'; done |
	tr ',' '\n')
closure=" "
unmet=""
set -f
while [ -n "$(echo "$queue" | tr -d ' \n')" ]; do
	next=""
	for dep in $(echo "$queue" | sed 's/ //g'); do
		[ -n "$dep" ] || continue
		p=$(choose "$(echo "$dep" | sed 's/|/ | /g')")
		case $p in
		"=") ;;
		"") unmet="$unmet $dep" ;;
		*)
			case $closure in *" $p "*) continue ;; esac
			closure="$closure$p "
			next="$next
$(dpkg-query -W -f='${Pre-Depends},${Depends}\n' "$p" | tr ',' '\n')"
			;;
		esac
	done
	queue=$next
done
set +f
[ -z "$unmet" ] || nok "dependencies satisfied neither by our packages nor by this system:$unmet"
for p in $closure; do
	dpkg -L "$p" | while read -r f; do
		[ -f "$f" ] || [ -L "$f" ] && echo "$f"
	done
done | sort -u | tar -C / -cf - --no-recursion -T - 2>/dev/null |
	tar -C "$root" --keep-directory-symlink -xf - || die "copying the dependencies into $root"
ok "clean root: our $(echo $debs | wc -w) packages + $(echo $closure | wc -w) Debian packages ($(echo $closure))"
mknod -m 666 "$root/dev/null" c 1 3 2>/dev/null
mknod -m 444 "$root/dev/urandom" c 1 9 2>/dev/null

# In the root, with an empty environment: the installed files only.
chroot=$(command -v chroot)
inroot() { env -i PATH=/usr/bin:/usr/sbin HOME=/root LOGNAME=root LC_ALL=C "$chroot" "$root" "$@"; }
check() { # check DESCRIPTION COMMAND...: passes when it exits 0
	what=$1
	shift
	if out=$("$@" 2>&1); then
		ok "$what"
	else
		nok "$what: $(echo "$out" | tail -5)"
	fi
	printf '%s\n' "$out" | sed 's/^/#   /' | head -40
}

# ---- 5. the installed envdb -------------------------------------------------
step "installed envdb"
plugindir=/usr/lib/$multiarch/envdb/plugins-1
check "envdb --version" inroot /usr/bin/envdb --version
[ "$(stat -c %a "$root/var/lib/envdb")" = 700 ] && ok "/var/lib/envdb is 0700" ||
	nok "/var/lib/envdb is $(stat -c %a "$root/var/lib/envdb")"
[ -f "$root/etc/envdb/envdb.yaml" ] && ok "/etc/envdb/envdb.yaml is installed" ||
	nok "/etc/envdb/envdb.yaml is missing"
ls "$root$plugindir"/*.la >/dev/null 2>&1 && nok "plugin .la files installed" ||
	ok "no .la files in $plugindir"
lib=$(ls "$root/usr/lib/$multiarch"/libenvdb.so.*.*.* 2>/dev/null | head -1)
soname=$(objdump -p "$lib" 2>/dev/null | awk '$1 == "SONAME" { print $2 }')
[ "$soname" = libenvdb.so.0 ] && ok "$(basename "$lib"): SONAME $soname (package libenvdb0)" ||
	nok "libenvdb SONAME is '$soname' ($lib)"
others=$(nm -D --defined-only "$lib" | awk '{ print $3 }' | grep -v '^envdb_' | tr '\n' ' ')
[ -z "$others" ] && ok "libenvdb exports only envdb_* ($(nm -D --defined-only "$lib" | wc -l) symbols)" ||
	nok "libenvdb exports non-envdb_ symbols: $others"
for so in "$root$plugindir"/*.so; do
	syms=$(nm -D --defined-only "$so" | awk '{ print $3 }' | tr '\n' ' ')
	[ "$syms" = "envdb_plugin_entry_v1 " ] && ok "$(basename "$so") exports only envdb_plugin_entry_v1" ||
		nok "$(basename "$so") exports: $syms"
done
check "envdb manifest check (the packaged manifest)" inroot /usr/bin/envdb manifest check
check "envdb --manifest /etc/envdb/envdb.yaml init" \
	inroot /usr/bin/envdb --manifest /etc/envdb/envdb.yaml init
[ -f "$root/var/lib/envdb/control.db" ] && [ -f "$root/var/lib/envdb/keyring/current" ] &&
	ok "control plane and keyring in /var/lib/envdb" ||
	nok "no control plane or keyring in /var/lib/envdb"
inroot /usr/bin/envdb --json plugins >"$work/plugins.json" 2>&1
if grep -q "\"plugin_dir\": \"$plugindir\"" "$work/plugins.json" &&
	[ "$(grep -c "\"path\": \"$plugindir/" "$work/plugins.json")" -eq 2 ] &&
	! grep -q "$work" "$work/plugins.json"; then
	ok "envdb plugins: sqlite and kms from $plugindir"
else
	nok "envdb plugins: $(cat "$work/plugins.json")"
fi
check "envdb org provision acme --by alice" inroot /usr/bin/envdb org provision acme --by alice
check "envdb env provision acme dev --type development" \
	inroot /usr/bin/envdb env provision acme dev --type development --by alice
check "envdb member add acme/dev bob maker" inroot /usr/bin/envdb member add acme/dev bob maker --by alice
inroot /usr/bin/envdb --json resolve acme/prod --user alice --reveal >"$work/resolve.json" 2>&1
url=$(sed -n 's/^  "database_url": "\(.*\)",$/\1/p' "$work/resolve.json")
if grep -q '"driver": "sqlite"' "$work/resolve.json" && grep -q '"secret": "..*"' "$work/resolve.json" &&
	[ -f "$root${url#file:}" ]; then
	ok "envdb resolve acme/prod --user alice: sqlite, $url (file exists in the root), secret"
else
	nok "envdb resolve acme/prod: $(cat "$work/resolve.json")"
fi
check "envdb resolve acme/dev --user bob" inroot /usr/bin/envdb resolve acme/dev --user bob
check "envdb check" inroot /usr/bin/envdb check
check "envdb init /srv/deploy (a new deployment)" inroot /usr/bin/envdb init /srv/deploy
check "org provision + resolve on /srv/deploy" inroot /usr/bin/envdb --manifest /srv/deploy/envdb.yaml \
	org provision beta --by carol
check "resolve beta/prod on /srv/deploy" inroot /usr/bin/envdb --manifest /srv/deploy/envdb.yaml \
	resolve beta/prod --user carol
# envdb-sdk: the installed conformance kit on the installed sqlite adapter.
mkdir -p "$root/srv/conformance"
check "envdb-conformance on the installed sqlite adapter (envdb-sdk)" \
	inroot /usr/bin/envdb-conformance --plugin-path "$plugindir/sqlite.so" --kind adapter \
	--config base_dir=/srv/conformance

# The plugin packages: loaded and initialised from the installed directory
# (neither connects at init; the secrets come from the environment).
cat >"$root/srv/plugins.yaml" <<EOF
version: 1
control_plane: /srv/plugins.db
plugins:
  - name: postgres
    kind: adapter
    config:
      admin_conninfo_env: PG_ADMIN
      client_host: db.example.org
  - name: turso
    kind: adapter
    config:
      organization: acme
      api_token_env: TURSO_TOKEN
  - name: kms
    kind: encryptor
    config:
      keyring_dir: /srv/plugins-keyring
EOF
out=$(env -i PATH=/usr/bin HOME=/root LC_ALL=C PG_ADMIN='host=127.0.0.1 port=1 user=u dbname=postgres' \
	TURSO_TOKEN=not-a-token "$chroot" "$root" /usr/bin/envdb --manifest /srv/plugins.yaml plugins 2>&1)
echo "$out" | sed 's/^/#   /'
if echo "$out" | grep -q "^postgres .*$plugindir/postgres.so" &&
	echo "$out" | grep -q "^turso .*$plugindir/turso.so"; then
	ok "envdb-plugin-postgres and envdb-plugin-turso load from $plugindir"
else
	nok "the postgres and turso plugins do not load"
fi

# No path of the build tree anywhere in what was installed.
if grep -r -l -a -F "$work" "$root/usr" "$root/etc" 2>/dev/null | grep -v '/usr/share/doc/' >"$work/leaks"; then
	nok "build-tree paths in: $(cat "$work/leaks")"
else
	ok "no build-tree path in the installed files"
fi

# man envdb: every command of the installed envdb --help has its entry.
page=$root/usr/share/man/man1/envdb.1.gz
inroot /usr/bin/envdb --help | awk '/^commands:/ { on = 1; next } /^$/ { on = 0 }
	on && /^  [a-z]/ { sub(/^  /, ""); sub(/  +.*/, "");
		if ($2 ~ /^[a-z][a-z0-9-]*$/) print $1 " " $2; else print $1 }' >"$work/commands"
zcat "$page" | sed -n 's/^\.SS "*\([^"]*\)"*$/\1/p' | sed 's/\\-/-/g' >"$work/entries"
missing=$(grep -Fvx -f "$work/entries" "$work/commands" | tr '\n' ',')
if [ -s "$work/commands" ] && [ -z "$missing" ]; then
	ok "man envdb documents all $(wc -l <"$work/commands") commands of envdb --help"
else
	nok "man envdb lacks: $missing"
fi
if command -v man >/dev/null 2>&1; then
	MANWIDTH=80 man --warnings -l "$page" >"$work/envdb.1.txt" 2>"$work/man.warn"
	[ -s "$work/envdb.1.txt" ] && [ ! -s "$work/man.warn" ] && ok "man envdb renders without warnings" ||
		nok "man envdb: $(head -5 "$work/man.warn")"
	sed -n '1,12p' "$work/envdb.1.txt" | sed 's/^/#   /'
fi

# The installed bash completion, asking the installed envdb (through chroot).
mkdir -p "$work/bin"
printf '#!/bin/sh\nexec env -i PATH=/usr/bin LC_ALL=C %s %s /usr/bin/envdb "$@"\n' "$chroot" "$root" \
	>"$work/bin/envdb"
chmod +x "$work/bin/envdb"
got=$(bash -c '. "$1" && COMP_WORDS=("$2" env show "") COMP_CWORD=3 && _envdb &&
	printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' \
	_ "$root/usr/share/bash-completion/completions/envdb" "$work/bin/envdb" 2>&1)
[ "$got" = "acme/dev acme/prod " ] && ok "bash completion of 'envdb env show': $got" ||
	nok "bash completion of 'envdb env show' gave '$got'"

echo "# packages: $work/pkg/*.deb; lintian: $work/lintian.log"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
