#!/bin/sh
# SPDX-License-Identifier: MIT
# `make demo` as a user runs it, from the top of the tree (on the already
# configured build directory given): exit 0, no make "Entering/Leaving
# directory" noise, and the demo's result line is the last thing printed.
set -eu
build=$1
src=$2
out=$(mktemp /tmp/hptmig-demo-XXXXXX)
trap 'rm -f "$out"' EXIT
cd "$src"
# As a user types it at the top level: under `make check` this runs inside a
# make (MAKELEVEL > 0), where make prints the directory lines itself.
if ! env -u MAKELEVEL -u MAKEFLAGS -u MFLAGS make demo BUILD="$build" >"$out" 2>&1; then
	echo "make demo failed:" >&2
	tail -n 20 "$out" >&2
	exit 1
fi
if grep -E "(Entering|Leaving) directory" "$out" >&2; then
	echo "make demo printed make's directory lines" >&2
	exit 1
fi
last=$(tail -n 1 "$out")
case $last in
result:*) ;;
*)
	echo "make demo: the last line is not the demo's result: '$last'" >&2
	exit 1
	;;
esac
echo "make demo: $(wc -l <"$out") lines, the last: $last"
