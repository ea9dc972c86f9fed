#!/bin/sh
# SPDX-License-Identifier: MIT
# interop-rewrite.sh: proves that real QEMU accepts a stream re-encoded by
# `hptmig rewrite`. Boots a real ppc64 pseries guest under QEMU 10 (TCG) with
# the kit in ../shared/interop, migrates it live (with churn, so spapr/htab has
# PART records) into a file, rewrites the file, checks with `hptmig analyze`
# that the HTAB digest is unchanged and the section now has START + END only,
# then loads the rewritten stream with -incoming and requires the guest's
# console to answer. Never touches processes it did not start.
#
# usage: scripts/interop-rewrite.sh [HPTMIG_BIN]
# env:   INTEROP_DIR  the kit            (default: <repo>/../shared/interop)
#        QEMU_CACHE   download cache    (default: <repo>/../qemu-cache, outside the repo)
#        WORK         scratch dir       (default: a new mktemp -d, removed on success)
#        MEM (1G) CPU (POWER8) CHURN (1) LIVE_SECONDS (8)
# exit:  0 pass, 1 fail, 77 skipped (toolkit or downloads unavailable)
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${HPTMIG_BIN:-$REPO/build/tools/hptmig}}
KIT=${INTEROP_DIR:-$REPO/../shared/interop}
CACHE=${QEMU_CACHE:-$REPO/../qemu-cache}
MEM=${MEM:-1G}
export CPU=${CPU:-POWER8} SMP=1
CHURN=${CHURN:-1}
LIVE_SECONDS=${LIVE_SECONDS:-8}
log() { echo "interop-rewrite: $*" >&2; }
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

WORK=${WORK:-$(mktemp -d /tmp/hptmig-interop.XXXXXX)}
mkdir -p "$WORK"
export INTEROP_RUNDIR="$WORK/run"
started=""
cleanup() {
  for g in $started; do "$KIT/stop-guest.sh" "$g" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT INT TERM

SRC="$WORK/src.mig" OUT="$WORK/rewritten.mig"
log "booting the source guest ($CPU, $MEM, -smp 1)"
started="src"
"$KIT/boot-guest.sh" src "$MEM" >&2 || fail "source guest did not boot"
if [ "$CHURN" = 1 ]; then
  python3 "$KIT/con.py" "$INTEROP_RUNDIR/src/con.sock" churn 5 --expect CHURN-STARTED >/dev/null ||
    log "churn did not start; migrating an idle guest"
  log "migrating live (1 ms downtime limit for ${LIVE_SECONDS}s, then 2000 ms)"
  python3 "$KIT/migrate-to-file.py" --downtime-ms 1 --max-bandwidth 33554432 \
    --relax-after "$LIVE_SECONDS" --final-downtime-ms 2000 src "$SRC" >&2 || fail "migration to file failed"
else
  python3 "$KIT/migrate-to-file.py" src "$SRC" >&2 || fail "migration to file failed"
fi
"$KIT/stop-guest.sh" src >/dev/null 2>&1 || true
started=""

log "analyze + rewrite"
"$BIN" analyze "$SRC" --json > "$WORK/src.json" || fail "hptmig analyze refused QEMU's own stream"
"$BIN" rewrite "$SRC" "$OUT" >&2 || fail "hptmig rewrite failed"
"$BIN" analyze "$OUT" --json > "$WORK/out.json" || fail "hptmig analyze refused the rewritten stream"
python3 - "$WORK/src.json" "$WORK/out.json" <<'PY' || fail "rewritten stream differs where it must not"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
ha, hb = a["htab"], b["htab"]
print("interop-rewrite: source : machine %s, htab shift %s, %d records (%d PART), %d chunks, %d valid, digest %s"
      % (a["machine"], ha["shift"], ha["records"], ha["record_counts"]["part"], ha["chunks"], ha["valid"], ha["digest"]), file=sys.stderr)
print("interop-rewrite: rewrite: machine %s, htab shift %s, %d records (%d PART), %d chunks, %d valid, digest %s"
      % (b["machine"], hb["shift"], hb["records"], hb["record_counts"]["part"], hb["chunks"], hb["valid"], hb["digest"]), file=sys.stderr)
assert ha["digest"] == hb["digest"], "digest changed"
assert hb["record_counts"]["part"] == 0 and hb["record_counts"]["end"] == 1, "PART records left"
assert [(s["idstr"], s["instance"]) for s in a["sections"]] == [(s["idstr"], s["instance"]) for s in b["sections"]]
assert a["ram"] == b["ram"], "ram changed"
PY

log "loading the rewritten stream into a fresh QEMU (-incoming)"
started="dst"
if ! python3 "$KIT/load-and-check.py" --tries 2 dst "$MEM" "$OUT"; then
  fail "QEMU did not resume the guest from the rewritten stream (kept in $WORK)"
fi
started=""
trap - EXIT INT TERM
cleanup
log "PASS: QEMU resumed the guest from the stream rewritten by hptmig"
[ -n "${KEEP:-}" ] || rm -rf "$WORK"
exit 0
