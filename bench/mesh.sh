#!/usr/bin/env bash
# bench/mesh.sh: what the two-hop mesh adds to latency at a fixed request rate.
#
# Two Shoal processes (release build, one worker each, pinned to CPU 1 with --no-pin; the load
# generator on CPU 0):
#   B: holds the CA (local, in a temp state dir) and answers `GET /` itself (direct_response),
#      on 19501 (plaintext) and 19502 (SPIFFE mTLS, allow .../sa/client-a).
#   A: identity .../sa/client-a from B's CA (admin API 19500); 19503 -> mTLS -> B 19502 (the
#      mesh), 19504 -> plaintext -> B 19501 (one extra proxy hop, no TLS).
# Paths, interleaved per round: direct (client -> B 19501), hop (client -> A 19504 -> B 19501),
# mesh (client -> A 19503 -> B 19502). bench/src/bin/fixed-rate.rs sends RATE req/s over CONNS
# keep-alive connections for DURATION s and measures from the scheduled send time.
# Env: RATE (1000), DURATION (20), ROUNDS (3), CONNS (10), NO_BUILD=1, RESULTS_DIR.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RATE=${RATE:-1000} DURATION=${DURATION:-20} ROUNDS=${ROUNDS:-3} CONNS=${CONNS:-10}
RESULTS_DIR=${RESULTS_DIR:-$HERE/results}
OUT=$RESULTS_DIR/$(date +%Y-%m-%d-%H%M%S)-mesh.txt
mkdir -p "$RESULTS_DIR"
if [[ ${NO_BUILD:-0} != 1 ]]; then
  (cd "$ROOT" && cargo build --release -p shoal --bin shoal -p shoal-bench --bin fixed-rate)
fi
SHOAL=$ROOT/target/release/shoal LOAD=$ROOT/target/release/fixed-rate
TMP=$(mktemp -d /tmp/shoal-mesh.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$TMP"; }
trap cleanup EXIT
TD=spiffe://example.org/ns/default/sa
cat >"$TMP/b.yaml" <<YAML
workers: 1
state_dir: $TMP/b-state
identity: { id: "$TD/server-b" }
admin: { grpc: "127.0.0.1:19500" }
listeners:
  - { name: direct, address: "127.0.0.1:19501", protocol: http1, routes: r }
  - { name: mesh-in, address: "127.0.0.1:19502", protocol: auto, routes: r, tls: { mode: mutual, allow: ["$TD/client-a"] } }
routes:
  r:
    - domains: ["*"]
      routes: [ { match: { prefix: / }, direct_response: { status: 200, body: "ok\n" } } ]
YAML
cat >"$TMP/a.yaml" <<YAML
workers: 1
identity: { id: "$TD/client-a" }
ca: { remote: "127.0.0.1:19500" }
listeners:
  - { name: mesh, address: "127.0.0.1:19503", protocol: http1, routes: mesh }
  - { name: hop, address: "127.0.0.1:19504", protocol: http1, routes: hop }
routes:
  mesh:
    - domains: ["*"]
      routes: [ { match: { prefix: / }, cluster: b-mtls } ]
  hop:
    - domains: ["*"]
      routes: [ { match: { prefix: / }, cluster: b-plain } ]
clusters:
  - { name: b-mtls, endpoints: ["127.0.0.1:19502"], tls: { spiffe_id: "$TD/server-b" } }
  - { name: b-plain, endpoints: ["127.0.0.1:19501"] }
YAML
export NO_COLOR=1
setsid taskset -c 1 "$SHOAL" run --config "$TMP/b.yaml" --no-pin 2>"$TMP/b.log" & PIDS+=($!)
sleep 1
setsid taskset -c 1 "$SHOAL" run --config "$TMP/a.yaml" --no-pin 2>"$TMP/a.log" & PIDS+=($!)
for _ in $(seq 100); do
  curl -sf -o /dev/null http://127.0.0.1:19503/ && break
  sleep 0.1
done
curl -sf -o /dev/null http://127.0.0.1:19503/ || { echo "mesh path not up"; cat "$TMP"/*.log; exit 1; }
{
  echo "# bench/mesh.sh $(date -Is) commit $(git -C "$ROOT" rev-parse --short HEAD) RATE=$RATE DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS load=$(cut -d' ' -f1-3 /proc/loadavg)"
  for r in $(seq "$ROUNDS"); do
    for path in direct:19501 hop:19504 mesh:19503; do
      echo "round=$r path=${path%%:*} $(taskset -c 0 "$LOAD" "127.0.0.1:${path#*:}" "$RATE" "$DURATION" "$CONNS")"
    done
  done
} | tee "$OUT"
echo "output: $OUT"
