#!/bin/sh
# SPDX-License-Identifier: MIT
# Two "hosts" on one machine for migration tests: network namespaces A and B
# joined by a veth pair (10.231.0.1 in A, 10.231.0.2 in B), with a bandwidth
# limit (tbf) on both ends. Asked for a latency, it puts netem under each
# tbf (LATENCY_MS each way: the round trip is twice that) and prints
# "netem delay"; netem is not built into every kernel (not this VM's), and
# then it prints "no netem" and adds nothing: the tests then put
# tests/cli/delay_relay (a TCP relay that delays each direction) in the path
# instead. Uses only the addresses of the pair it creates. Exit 77 (skip)
# when namespaces cannot be made here (not root, no ip, no veth).
#
# usage: netns-setup.sh NS_A NS_B [RATE (default 100mbit)] [LATENCY_MS each way]
set -u
A=${1:?namespace A}
B=${2:?namespace B}
RATE=${3:-100mbit}
LAT=${4:-}
VA="${A}-v"
VB="${B}-v"

skip() { echo "netns-setup: skipped: $*" >&2; exit 77; }
fail() { echo "netns-setup: $*" >&2; sh "$(dirname "$0")/netns-teardown.sh" "$A" "$B"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root"
command -v ip >/dev/null 2>&1 || skip "no ip command"
command -v tc >/dev/null 2>&1 || skip "no tc command"
ip netns add "$A" 2>/dev/null || skip "cannot create network namespaces"
ip netns add "$B" 2>/dev/null || { ip netns del "$A"; skip "cannot create network namespaces"; }
# veth names are limited to 15 bytes
ip link add "$VA" type veth peer name "$VB" 2>/dev/null || \
	{ sh "$(dirname "$0")/netns-teardown.sh" "$A" "$B"; skip "cannot create a veth pair"; }
ip link set "$VA" netns "$A" || fail "move $VA"
ip link set "$VB" netns "$B" || fail "move $VB"
ip -n "$A" addr add 10.231.0.1/24 dev "$VA" || fail "address A"
ip -n "$B" addr add 10.231.0.2/24 dev "$VB" || fail "address B"
ip -n "$A" link set lo up && ip -n "$B" link set lo up || fail "lo up"
ip -n "$A" link set "$VA" up && ip -n "$B" link set "$VB" up || fail "veth up"
# handle 1: so that netem can go under the shaper (tbf's one class, 1:1)
ip netns exec "$A" tc qdisc add dev "$VA" root handle 1: tbf rate "$RATE" burst 32kbit latency 400ms \
	|| fail "tbf on $VA"
ip netns exec "$B" tc qdisc add dev "$VB" root handle 1: tbf rate "$RATE" burst 32kbit latency 400ms \
	|| fail "tbf on $VB"
if [ -n "$LAT" ]; then
	if ip netns exec "$A" tc qdisc add dev "$VA" parent 1:1 handle 10: netem delay "${LAT}ms" \
		2>/dev/null &&
	   ip netns exec "$B" tc qdisc add dev "$VB" parent 1:1 handle 10: netem delay "${LAT}ms" \
		2>/dev/null; then
		echo "netns-setup: netem delay ${LAT} ms each way"
	else
		# never half a delay: take back A's if B's failed
		ip netns exec "$A" tc qdisc del dev "$VA" parent 1:1 handle 10: 2>/dev/null
		echo "netns-setup: no netem on this kernel: no added latency (bandwidth limit only)"
	fi
fi
# the link is up when A reaches B (checked when ping exists; the migration
# source also retries its connect while the destination is not there yet)
if command -v ping >/dev/null 2>&1; then
	i=0
	until ip netns exec "$A" ping -c1 -W1 10.231.0.2 >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 5 ] || fail "10.231.0.2 unreachable from $A"
	done
fi
echo "netns-setup: $A (10.231.0.1) <-> $B (10.231.0.2), $RATE"
