#!/bin/sh
# SPDX-License-Identifier: MIT
# Make sure the Debian packages hptmig builds and tests with are installed
# (libunistring-dev: for a static link of GnuTLS, as hptmig.pc asks).
# As root: installs what is missing (apt-get). Otherwise: prints the exact
# apt-get line and fails. Used by `make check` and `make demo`.
set -eu
PKGS="build-essential cmake pkg-config libssl-dev libjansson-dev libcmocka-dev libzstd-dev zstd libgnutls28-dev libunistring-dev gnutls-bin clang libclang-rt-14-dev iproute2 man-db"
missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
	echo "deps: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || true
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing
else
	echo "deps: missing Debian packages. Run as root:" >&2
	echo "  apt-get install -y$missing" >&2
	exit 1
fi
