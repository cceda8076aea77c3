#!/bin/bash
# tests/test_completion.sh — core/envdb.bash-completion against the built
# envdb and a real deployment (envdb init, two organizations, three
# environments): commands, subcommands, options, option values, ORG/SLUG and
# ORG from the control plane, plugin names, credential ids, and --manifest
# on the command line.  Run twice: on its own, and under bash-completion
# (/usr/share/bash-completion/bash_completion) when that is installed.
# Prints one line per check and "N passed, N failed".
set -u
build=${ENVDB_TEST_BUILDDIR:?ENVDB_TEST_BUILDDIR is not set (run through make check)}
src=${ENVDB_TEST_SRCDIR:?ENVDB_TEST_SRCDIR is not set (run through make check)}
envdb=$build/core/envdb
completion=$src/core/envdb.bash-completion
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $*"; }
nok() { fail=$((fail + 1)); echo "FAIL - $*"; }

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
unset ENVDB_MANIFEST
(
	cd "$tmp" || exit 1
	"$envdb" init "$tmp/d" &&
		export ENVDB_MANIFEST=$tmp/d/envdb.yaml &&
		"$envdb" org provision acme --by alice &&
		"$envdb" env provision acme dev --type development --by alice &&
		"$envdb" org provision beta --by bob &&
		"$envdb" cred rotate acme/prod --overlap 1h
) >"$tmp/setup.log" 2>&1 || {
	cat "$tmp/setup.log"
	echo "FAIL - deployment set up"
	echo "0 passed, 1 failed"
	exit 1
}
cred=$(ENVDB_MANIFEST=$tmp/d/envdb.yaml "$envdb" --json cred list acme/prod |
	sed -n 's/^      "id": "\([^"]*\)",$/\1/p' | head -1)

# complete WORD... : the completions of the last word, one per line, sorted.
complete_words()
{
	COMP_WORDS=("$@")
	COMP_CWORD=$(($# - 1))
	COMP_LINE="$*"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	_envdb envdb "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
	printf '%s\n' "${COMPREPLY[@]}" | sort
}

# expect "DESCRIPTION" "EXPECTED (space separated, sorted)" WORD...
expect()
{
	local what=$1 want=$2 got
	shift 2
	got=$(complete_words "$@" | tr '\n' ' ' | sed 's/ $//')
	if [[ $got == "$want" ]]; then
		ok "$mode: $what"
	else
		nok "$mode: $what: completing '$*' gave '$got', expected '$want'"
	fi
}

# expect_has "DESCRIPTION" "WORDS that must be among the completions" WORD...
expect_has()
{
	local what=$1 want=$2 got w missing=""
	shift 2
	got=" $(complete_words "$@" | tr '\n' ' ')"
	for w in $want; do
		[[ $got == *" $w "* ]] || missing+=" $w"
	done
	if [[ -z $missing ]]; then
		ok "$mode: $what"
	else
		nok "$mode: $what: completing '$*' lacks$missing (gave:$got)"
	fi
}

run_checks()
{
	export ENVDB_MANIFEST=$tmp/d/envdb.yaml
	expect_has "commands" "init plugins manifest key org env cred resolve reconcile member check schema migrate help" \
		"$envdb" ""
	expect "a command by its prefix" "env" "$envdb" "en"
	expect "global options" "--help --json --manifest --output --quiet --version" "$envdb" "--"
	expect "output formats" "json table tsv" "$envdb" --output ""
	expect "ORG/SLUG after --output FORMAT" "acme/dev acme/prod beta/prod" "$envdb" --output tsv env show ""
	expect "env subcommands" "archive delete list provision show unarchive" "$envdb" env ""
	expect "key subcommands" "generate list rewrap rotate" "$envdb" key ""
	expect "ORG/SLUG from the control plane" "acme/dev acme/prod beta/prod" "$envdb" env show ""
	expect "ORG/SLUG by prefix" "acme/dev acme/prod" "$envdb" resolve a
	expect "ORG/SLUG after global options" "acme/dev acme/prod beta/prod" "$envdb" --json cred list ""
	expect "ORG from the control plane" "acme beta" "$envdb" env list ""
	expect "ORG of env provision" "acme beta" "$envdb" env provision ""
	expect "no ORG for a new organization" "" "$envdb" org provision ""
	expect "options of resolve" "--help --json --output --quiet --reveal --user" "$envdb" resolve acme/prod --
	expect "no second ORG/SLUG" "" "$envdb" resolve acme/prod --user alice ""
	expect "env types" "development preview production sandbox staging test trial" \
		"$envdb" env provision acme qa --type ""
	expect "plans" "custom enterprise free pro starter" "$envdb" org provision zeta --plan ""
	expect "roles" "admin guest maker owner reader" "$envdb" member add acme/dev carol ""
	expect "authorizations" "full_access read_only" "$envdb" cred rotate acme/prod --authorization ""
	expect "adapters from the manifest" "sqlite" "$envdb" org provision zeta --driver ""
	expect "encryptors from the manifest" "kms" "$envdb" key list --encryptor ""
	expect "credential ids" "$(ENVDB_MANIFEST=$tmp/d/envdb.yaml "$envdb" --json cred list acme/prod |
		sed -n 's/^      "id": "\([^"]*\)",$/\1/p' | sort | tr '\n' ' ' | sed 's/ $//')" \
		"$envdb" cred revoke acme/prod ""
	expect_has "a credential id by prefix" "$cred" "$envdb" cred revoke acme/prod "${cred:0:8}"
	expect "options of migrate" "--batch --by --dry-run --help --json --legacy-encryptor --map-org --map-org-file --output --quiet" \
		"$envdb" migrate v4-to-v5 --
	expect "help COMMAND" "manifest member migrate" "$envdb" help m
	expect "help COMMAND SUBCOMMAND" "list provision show" "$envdb" help org ""
	expect "org subcommands" "list provision show" "$envdb" org ""
	expect "ORG of org show" "acme beta" "$envdb" org show ""
	expect "options of env delete" "--help --json --now --output --quiet --yes" "$envdb" env delete acme/dev --
	expect "options of member remove" "--help --json --output --quiet --yes" "$envdb" member remove acme/dev bob --
	expect_has "durations" "1h30m 90s 7d" "$envdb" cred rotate acme/prod --overlap ""
	unset ENVDB_MANIFEST
	expect "ORG/SLUG with --manifest on the line" "acme/dev acme/prod beta/prod" \
		"$envdb" --manifest "$tmp/d/envdb.yaml" env show ""
	expect "nothing without a manifest" "" "$envdb" env show ""
	(cd "$tmp" && mkdir -p mf/sub && touch mf/a.yaml mf/b.txt &&
		expect_has "--manifest completes YAML files" "mf/a.yaml" "$envdb" --manifest mf/)
}

mode=plain
# shellcheck source=/dev/null
source "$completion" || nok "sourcing $completion"
if complete -p envdb >/dev/null 2>&1; then
	ok "$mode: complete -F _envdb envdb is registered"
else
	nok "$mode: envdb has no completion"
fi
run_checks

bc=/usr/share/bash-completion/bash_completion
if [[ -r $bc ]]; then
	mode=bash-completion
	# shellcheck source=/dev/null
	if source "$bc" >/dev/null 2>&1 && source "$completion" &&
		declare -F _init_completion >/dev/null; then
		run_checks
	else
		nok "$mode: loading $bc"
	fi
else
	echo "skip - bash-completion is not installed ($bc)"
fi

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
