#!/bin/sh
# SPDX-License-Identifier: MIT
# List C functions longer than a limit (default 100 lines, counted from the
# line naming the function to its closing brace). Relies on the project's
# layout: a function's body opens and closes with a brace in column 0.
# Usage: scripts/fnlen.sh [LIMIT] DIR... ; exit status 1 if any is over.
limit=100
case "$1" in [0-9]*) limit=$1; shift ;; esac
find "$@" -name '*.c' | sort | xargs awk -v limit="$limit" '
FNR == 1 { name = ""; start = 0 }
/^[A-Za-z_].*\(/ && !/;[ \t]*$/ { cand = $0; candline = FNR }
/^\{/ { if (cand != "") { name = cand; start = candline } }
/^\}/ { if (name != "") { n = FNR - start + 1
          if (n > limit) { sub(/\(.*/, "", name); printf "%s:%d: %d lines: %s\n", FILENAME, start, n, name; bad = 1 }
          name = ""; cand = "" } }
END { exit bad }'
