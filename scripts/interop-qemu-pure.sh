#!/bin/sh
# SPDX-License-Identifier: MIT
# interop-qemu-pure.sh: proves that real QEMU's loader takes a stream that
# `hptmig migrate --qemu-pure` wrote: its live section `spapr/htab` must not
# be numbered 0 (QEMU hands PART/END records of id 0 to `timer`). Starts
# qemu-system-ppc64 -S -incoming "exec:cat FILE" with the kit in
# ../shared/interop and requires query-migrate to say "completed". Only the
# load is checked (the simulated guest's stream has no RAM or CPU state, so
# there is no guest to run). Never touches processes it did not start.
#
# usage: scripts/interop-qemu-pure.sh [HPTMIG_BIN]
# env:   INTEROP_DIR (default <repo>/../shared/interop), QEMU_CACHE (default
#        <repo>/../qemu-cache), WORK (default a new mktemp -d), MEM (1G)
# exit:  0 pass, 1 fail, 77 skipped (kit or downloads unavailable)
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${HPTMIG_BIN:-$REPO/build/tools/hptmig}}
KIT=${INTEROP_DIR:-$REPO/../shared/interop}
CACHE=${QEMU_CACHE:-$REPO/../qemu-cache}
MEM=${MEM:-1G}
log() { echo "interop-qemu-pure: $*" >&2; }
skip() { log "SKIP: $*"; exit 77; }
fail() { log "FAIL: $*"; exit 1; }

[ -x "$BIN" ] || fail "hptmig binary not found at $BIN (build first, or pass its path)"
[ -x "$KIT/setup-qemu-pseries.sh" ] || skip "interop kit not found at $KIT"
command -v python3 >/dev/null || skip "python3 missing"
mkdir -p "$CACHE"
if ! "$KIT/setup-qemu-pseries.sh" "$CACHE" > "$CACHE/interop.env.out" 2> "$CACHE/setup.log"; then
  tail -n 5 "$CACHE/setup.log" >&2
  skip "the QEMU toolkit could not be set up in $CACHE (no network or mirror?)"
fi
. "$CACHE/interop.env"

WORK=${WORK:-$(mktemp -d /tmp/hptmig-pure.XXXXXX)}
mkdir -p "$WORK"
export INTEROP_RUNDIR="$WORK/run"
started=""
cleanup() {
  for g in $started; do "$KIT/stop-guest.sh" "$g" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT INT TERM

F="$WORK/pure.mig"
"$BIN" migrate "file:$F" --qemu-pure --ram "$MEM" --workload linux >/dev/null 2>&1 ||
  fail "hptmig migrate --qemu-pure failed"
log "loading $F into QEMU (-m $MEM -S -incoming)"
started="dst"
"$KIT/run-guest.sh" dst "$MEM" -S -incoming "exec:cat $F" >/dev/null || fail "QEMU did not start"
status=""
i=0
while [ $i -lt 60 ]; do
  i=$((i + 1))
  sleep 1
  # QEMU exits when the load fails: the socket is gone then
  st=$(python3 "$KIT/qmp.py" "$INTEROP_RUNDIR/dst/qmp.sock" query-migrate 2>/dev/null) || { status=exited; break; }
  case "$st" in
    *'"completed"'*) status=completed; break ;;
    *'"failed"'*) status=failed; break ;;
  esac
done
if [ "$status" != completed ]; then
  tail -n 5 "$INTEROP_RUNDIR/dst/qemu.log" >&2 || true
  fail "QEMU did not load the --qemu-pure stream (migration status: ${status:-timeout}; kept in $WORK)"
fi
cleanup
started=""
trap - EXIT INT TERM
log "PASS: QEMU loaded the stream hptmig wrote with --qemu-pure"
[ -n "${KEEP:-}" ] || rm -rf "$WORK"
exit 0
