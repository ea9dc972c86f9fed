#!/bin/sh
# SPDX-License-Identifier: MIT
# Install the build tree into a temporary prefix, then configure, build and
# run a tiny consumer project with find_package(hptmig CONFIG) against it;
# a version the package does not satisfy must be refused.
set -eu
build=$1
src=$2
cc=${3:-cc}
prefix=$(mktemp -d /tmp/hptmig-cmake-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cmake -S "$src/cmake-consumer" -B "$prefix/consumer" -DCMAKE_C_COMPILER="$cc" \
	-DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS="-Wall -Werror" >/dev/null
cmake --build "$prefix/consumer" >/dev/null
# the imported target carries the library's path (and the run path)
"$prefix/consumer/use"
# SameMajorVersion: asking for a later major version must fail
mkdir -p "$prefix/v9"
cat >"$prefix/v9/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.16)
project(v9 LANGUAGES NONE)
find_package(hptmig 9 CONFIG REQUIRED)
CM
if cmake -S "$prefix/v9" -B "$prefix/v9/b" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null 2>&1; then
	echo "find_package(hptmig 9) was accepted by a $(basename "$build") package of another major version" >&2
	exit 1
fi
echo "cmake package: find_package(hptmig) consumer built and ran from $prefix"
