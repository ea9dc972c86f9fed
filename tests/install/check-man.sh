#!/bin/sh
# SPDX-License-Identifier: MIT
# The installed man pages: one for hptmig and one per command (every
# command `hptmig --help` lists), each formatted by man without a single
# warning. Exit 77 (skipped) when man is not installed.
set -eu
build=$1
bin=$2
command -v man >/dev/null 2>&1 || { echo "man not installed: skipped"; exit 77; }
prefix=$(mktemp -d /tmp/hptmig-man-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
dir="$prefix/share/man/man1"
cmds=$("$bin" --help | awk '/^commands:/ {on=1; next} on && /^  [a-z]/ {print $1}' |
	grep -v -x -e bench -e help)
[ -n "$cmds" ]
for page in hptmig $(for c in $cmds; do echo "hptmig-$c"; done); do
	f="$dir/$page.1"
	[ -f "$f" ] || { echo "missing man page $page(1) ($f)" >&2; exit 1; }
	warn=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$f" 2>&1 >/dev/null) || {
		echo "$page(1): man failed: $warn" >&2; exit 1; }
	[ -z "$warn" ] || { echo "$page(1): warnings: $warn" >&2; exit 1; }
	text=$(LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$f" 2>/dev/null)
	echo "$text" | grep -q "^NAME" || { echo "$page(1): no NAME section" >&2; exit 1; }
	version=$("$bin" --version | awk '{print $2}')
	echo "$text" | grep -q "hptmig $version" || {
		echo "$page(1): does not carry version $version" >&2; exit 1; }
done
# every option a command's --help lists appears in its page
for c in $cmds; do
	text=$(LC_ALL=C.UTF-8 MANWIDTH=200 man -l "$dir/hptmig-$c.1" 2>/dev/null)
	for o in $("$bin" "$c" --help | grep -o -- '--[a-z][a-z0-9-]*' | sort -u); do
		printf '%s\n' "$text" | grep -q -- "$o" || {
			echo "hptmig-$c(1) does not mention $o" >&2; exit 1; }
	done
done
echo "man: hptmig(1) and $(echo $cmds | wc -w) command pages, no warnings"
