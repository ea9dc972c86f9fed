#!/bin/sh
# SPDX-License-Identifier: MIT
# Remove the namespaces made by netns-setup.sh (the veth pair goes with
# them). Never fails: cleanup must always be safe to run.
# usage: netns-teardown.sh NS_A NS_B
for ns in "$@"; do
	ip netns del "$ns" 2>/dev/null
done
exit 0
