#!/usr/bin/env bash
# bench/admin.sh [apply] [traffic] : Shoal's admin API under measurement (issue 5), with
# bench/src/bin/admin-bench (see its doc comment and bench/README.md "Admin API").
#
#   apply   : Apply transactions adding 1, 100 and 10,000 routes (2 workers): time to the reply
#             and until fresh connections on every worker serve the new routes; min/med/max.
#   traffic : steady HTTP/1.1 load at a fixed rate through Shoal, rounds of (no applies,
#             100 applies/s each changing the route in use): errors, p50/p99 per phase.
# Default: both.
#
# Env knobs: SHOAL_BIN (default target/release/shoal, built first), BENCH_BIN (default
# target/release/admin-bench, built first), NO_BUILD=1, RESULTS_DIR (bench/results),
# BASE_PORT (19400: admin 19400, HTTP 19401, upstream 19402), REPS (7), SIZES (1,100,10000),
# RATE (2000 req/s), CONNS (16), PHASE_SECS (6), ROUNDS (5), APPLY_RATE (100),
# NO_STATE_DIR=1 (do not persist applies), BENCH_TIMEOUT (s, default 600).
#
# Output: RESULTS_DIR/<stamp>-admin.txt (header, tables, RESULT lines) and
# <stamp>-admin-shoal.log.gz (Shoal's stderr, gzipped). Everything runs on 127.0.0.1 in a private
# temporary directory (removed afterwards); Shoal is stopped by admin-bench at the end, and
# the whole run is under `timeout`.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RESULTS_DIR=${RESULTS_DIR:-$HERE/results}
STAMP=$(date +%Y-%m-%d-%H%M%S)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SHOAL_BIN=${SHOAL_BIN:-$TARGET_DIR/release/shoal}
BENCH_BIN=${BENCH_BIN:-$TARGET_DIR/release/admin-bench}
BASE_PORT=${BASE_PORT:-19400}
PARTS=("$@")
((${#PARTS[@]})) || PARTS=(apply traffic)
for p in "${PARTS[@]}"; do
  case $p in
    apply | traffic) ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown part '$p' (use: apply traffic)" >&2; exit 2 ;;
  esac
done
for port in "$BASE_PORT" $((BASE_PORT + 1)) $((BASE_PORT + 2)); do
  if ss -ltnH "sport = :$port" | grep -q .; then
    echo "port $port is taken: stop what listens there or set BASE_PORT" >&2
    exit 1
  fi
done
if [[ ${NO_BUILD:-0} != 1 ]]; then
  (cd "$ROOT" && cargo build --release -p shoal --bin shoal -p shoal-bench --bin admin-bench)
fi
mkdir -p "$RESULTS_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shoal-admin-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
OUT=$RESULTS_DIR/$STAMP-admin.txt
args=(--shoal "$SHOAL_BIN" --work-dir "$WORK" --base-port "$BASE_PORT"
  --parts "$(IFS=,; echo "${PARTS[*]}")"
  --reps "${REPS:-7}" --sizes "${SIZES:-1,100,10000}"
  --rate "${RATE:-2000}" --conns "${CONNS:-16}" --phase-secs "${PHASE_SECS:-6}"
  --rounds "${ROUNDS:-5}" --apply-rate "${APPLY_RATE:-100}")
[[ ${NO_STATE_DIR:-0} == 1 ]] && args+=(--no-state-dir)
{
  echo "# admin bench: ${PARTS[*]}"
  echo "# commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo ' (dirty)') | $(date -Is) | $(nproc) cpus | load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# shoal: $SHOAL_BIN | ${args[*]}"
} | tee "$OUT"
rc=0
timeout --kill-after=10 "${BENCH_TIMEOUT:-600}" "$BENCH_BIN" "${args[@]}" 2>&1 | tee -a "$OUT" || rc=$?
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"
# Thousands of `config applied` lines: stored compressed.
gzip -c "$WORK/shoal.log" >"$RESULTS_DIR/$STAMP-admin-shoal.log.gz" 2>/dev/null || true
if grep -qE ' (WARN|ERROR) |panicked' "$WORK/shoal.log" 2>/dev/null; then
  echo "warning: Shoal logged warnings/errors, see $RESULTS_DIR/$STAMP-admin-shoal.log.gz" | tee -a "$OUT"
fi
exit "$rc"
