#!/bin/bash
# SPDX-License-Identifier: MIT
# The installed bash completion: sourced in bash, its function completes
# commands, options (from each command's --help), option values and
# benchmark names.
set -eu
build=$1
bin=$2
prefix=$(mktemp -d /tmp/hptmig-compl-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
f="$prefix/share/bash-completion/completions/hptmig"
[ -f "$f" ] || { echo "missing $f" >&2; exit 1; }
# shellcheck source=/dev/null
. "$f"
complete -p hptmig | grep -q -- "-F _hptmig" || { echo "hptmig has no completion function" >&2; exit 1; }
fail=0
expect() { # expect "WANTED WORDS" WORDS... : the completion of the last word
	local want=$1
	shift
	COMP_WORDS=("$bin" "$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_hptmig
	local got="${COMPREPLY[*]}"
	if [ "$got" != "$want" ]; then
		echo "completion of '$*': got '$got', want '$want'" >&2
		fail=1
	fi
}
expect "migrate" mi
expect "incoming" inc
expect "--version" --vers
expect "--ram --rate" demo --ra
expect "--max-bandwidth" demo --max-b
expect "--downtime-limit" migrate tcp:h:1 --downtime
expect "--max-htab-shift" incoming x --max-h
expect "linux" migrate x --workload l
expect "tcp" demo --transport t
expect "migrate" bench mig
expect "--sizes" bench migrate --si
expect "proxy" help pro
expect "--strict" analyze x --str
expect "--listen-tls-creds" proxy a b --listen
d=$(mktemp -d); mkdir "$d/pki"; touch "$d/pkifile"
expect "$d/pki" proxy a b --tls-creds "$d/pk"
rm -r "$d"
[ $fail = 0 ]
echo "completion: all cases completed as expected"
