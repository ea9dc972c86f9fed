#!/bin/sh
# SPDX-License-Identifier: MIT
# Install the build tree into a temporary prefix, build docs/examples/embed.c
# (a VMM's own guest through hptmig/guest.h) against it with pkg-config, as
# its header says, and run it: it migrates its guest to a destination
# thread and exits 0 only when the tables' roots agree.
set -eu
build=$1
example=$2
cc=${3:-cc}
prefix=$(mktemp -d /tmp/hptmig-embed-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(dirname "$(find "$prefix" -name hptmig.pc | head -n 1)")
export PKG_CONFIG_PATH="$pc"
libdir=$(pkg-config --variable=libdir hptmig)
"$cc" -std=c11 -Wall -Wextra -Werror -o "$prefix/embed" "$example" \
	$(pkg-config --cflags --libs hptmig) -lpthread
mkdir "$prefix/run"
LD_LIBRARY_PATH="$libdir" "$prefix/embed" "$prefix/run"
