#!/usr/bin/env bash
# bench/route-lookup.sh : the criterion route-lookup bench (dataplane/benches/route_lookup.rs),
# then a table of median times and the 10,000-route / 10-route ratio per case, for the index
# (what workers use) and the linear scan (the reference). Target: index ratio <= 2.
#
# Output: RESULTS_DIR/<stamp>-route-lookup.txt (header with commit and load, the table) and
# criterion's own report under target/criterion/route_lookup_*.
# Env: RESULTS_DIR (bench/results), CARGO_JOBS (1), BENCH_ARGS (extra criterion args).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RESULTS_DIR=${RESULTS_DIR:-$HERE/results}
STAMP=$(date +%Y-%m-%d-%H%M%S)
OUT=$RESULTS_DIR/$STAMP-route-lookup.txt
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p "$RESULTS_DIR"
cd "$ROOT"
# Old estimates must not be mistaken for this run's.
rm -rf "$TARGET_DIR"/criterion/route_lookup_10 "$TARGET_DIR"/criterion/route_lookup_10000
{
  echo "# route lookup: index vs linear, 10 vs 10000 routes"
  echo "# commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (dirty)') | $(date -Is) | load: $(cut -d' ' -f1-3 /proc/loadavg) | $(nproc) cpus"
} >"$OUT"
# shellcheck disable=SC2086
timeout 1200 cargo bench -j"${CARGO_JOBS:-1}" -p shoal-dataplane --bench route_lookup -- ${BENCH_ARGS:-} \
  >"$OUT.log" 2>&1 || { tail -30 "$OUT.log"; exit 1; }
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT"
python3 - "$TARGET_DIR/criterion" >>"$OUT" <<'PY'
import json, sys, os
base = sys.argv[1]
def med(n, kind, case):
    p = os.path.join(base, f"route_lookup_{n}", kind, case, "new", "estimates.json")
    with open(p) as f:
        return json.load(f)["median"]["point_estimate"]
cases = ["hit_early", "hit_late", "hit_late_exact", "miss_to_catch_all"]
def fmt(ns):
    return f"{ns:.1f} ns" if ns < 10_000 else f"{ns / 1000:.1f} us"
print(f"{'case':<20} {'kind':<7} {'10 routes':>12} {'10000 routes':>14} {'10k/10':>8}")
worst = 0.0
for case in cases:
    for kind in ["index", "linear"]:
        a, b = med(10, kind, case), med(10000, kind, case)
        r = b / a
        if kind == "index":
            worst = max(worst, r)
        print(f"{case:<20} {kind:<7} {fmt(a):>12} {fmt(b):>14} {r:>7.2f}x")
print(f"worst index ratio 10k/10: {worst:.2f}x (target <= 2.00x): {'MET' if worst <= 2 else 'NOT MET'}")
PY
cat "$OUT"
