#!/bin/sh
# SPDX-License-Identifier: MIT
# Install the build tree into a temporary prefix and build a consumer of
# the library with pkg-config, shared and static: the install target, the
# headers and hptmig.pc must be usable as they are. With a fourth argument,
# build that program instead (docs/examples/embed.c, as its header says:
# shared, -Wextra) and run it with a fresh directory as its argument.
set -eu
build=$1
src=$2
cc=${3:-cc}
example=${4:-}
prefix=$(mktemp -d /tmp/hptmig-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(dirname "$(find "$prefix" -name hptmig.pc | head -n 1)")
export PKG_CONFIG_PATH="$pc"
libdir=$(pkg-config --variable=libdir hptmig)
if [ -n "$example" ]; then
	"$cc" -std=c11 -Wall -Wextra -Werror -o "$prefix/example" "$example" \
		$(pkg-config --cflags --libs hptmig)
	mkdir "$prefix/run"
	LD_LIBRARY_PATH="$libdir" "$prefix/example" "$prefix/run"
	exit
fi
"$cc" -std=c11 -Wall -Werror -o "$prefix/use" "$src/consumer.c" $(pkg-config --cflags --libs hptmig)
LD_LIBRARY_PATH="$libdir" "$prefix/use"
"$cc" -std=c11 -Wall -Werror -o "$prefix/use_static" "$src/consumer.c" \
	$(pkg-config --cflags hptmig) "$libdir/libhptmig.a" $(pkg-config --libs --static hptmig)
"$prefix/use_static"
echo "install: shared and static consumers built and ran from $prefix"
