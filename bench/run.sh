#!/usr/bin/env bash
# bench/run.sh [h1] [tcp] [rss] [h2] [h2h2] [grpc] : Shoal as the candidate of the peer
# benchmark kit (../shared/peer-bench next to the repo): nginx / haproxy / nghttpx / Shoal.
#
#   h1   : compare.sh, PROTO=h1,   candidate port 19380 (wrk, h1 keep-alive -> nginx upstream)
#   tcp  : compare.sh, PROTO=tcp,  candidate port 19381 (python echo ping-pong; iperf3 via 19385)
#   rss  : rss.sh, RSS idle vs. holding 1000 idle keep-alive connections (port 19380)
#   h2   : compare.sh, PROTO=h2,   candidate port 19382 (h2load h2c -> h1 nginx 18080)
#   h2h2 : compare.sh, PROTO=h2h2, candidate port 19383 (h2load h2c -> h2c nginx 18082)
#   grpc : compare.sh, PROTO=grpc, candidate port 19390 (h2load gRPC unary -> echo on 18090;
#          by default our fast grpc-echo replaces the kit's python server for every target)
#   tls  : compare.sh, PROTO=tls,  candidate port 19384 (TLS front -> h1 nginx; wrk/h2load over
#          TLS keep-alive, openssl s_time full handshakes; config bench/shoal-peer-tls.yaml)
#   mtls : compare.sh, PROTO=mtls, candidate port 19386 (same with client certificates)
# Default: h1 tcp rss (the h2 steps on request, or `all`). See bench/README.md for the method
# and how to read the tables.
#
# Env knobs (passed through to the kit):
#   ROUNDS (3), DURATION (s per target and test; default 10 for h1 and h2, 5 for tcp, h2h2
#   and grpc, as in the kit's recorded run), WARMUP (2), PATHS ("/"), CONNS_H1 (64), PIN (1), TCP_PYBULK (0),
#   N (1000 idle conns) / HOLD (6 s) for rss, CONNS_H2 (16; grpc: 4) / STREAMS (32; grpc: 16)
#   for h2load (h2, h2h2, grpc).
# Our own knobs:
#   SHOAL_BIN      binary to test (default: target/release/shoal, built with cargo first)
#   NO_BUILD=1     do not run `cargo build --release`
#   CONFIG         Shoal config (default bench/shoal-peer.yaml; must keep the 193xx ports)
#   RESULTS_DIR    where output goes (default bench/results)
#   BENCH_TIMEOUT  hard cap in seconds per step (default: computed from ROUNDS/DURATION/...)
#   KIT            the kit directory (default: <repo>/../shared/peer-bench)
#   KEEP_RUN_DIR=1 keep the kit's private run directory (logs, pid files, certs)
#   SHOAL_DRIVER   auto (default: io_uring when the kernel allows it, else epoll) or epoll
#                  (sets MONOIO_FORCE_LEGACY_DRIVER=1 for Shoal only)
#   GRPC_UPSTREAM  rust (default: start target/release/grpc-echo on 18090 before the kit; the
#                  kit's python server then fails to bind and every target, direct included,
#                  runs against ours) or python (the kit's own grpcio server, a few k calls/s)
#   GRPC_ECHO_BIN  grpc-echo binary (default target/release/grpc-echo, built with cargo first)
#   GRPC_ECHO_THREADS  its tokio worker threads (default 0 = one per CPU)
#
# Output per step: RESULTS_DIR/<stamp>-<proto>.txt (everything compare.sh/rss.sh printed,
# including the summary table), <stamp>-<proto>.raw (RESULT lines, all but rss) and
# <stamp>-<proto>-shoal.log (Shoal's stderr).
#
# Cleanup: the kit starts every daemon (Shoal included, via CANDIDATE_CMD) with setsid and
# stops them by process group on exit, Ctrl-C or timeout. Each step runs under `timeout`,
# uses a private RUN_DIR, and afterwards anything still recorded in that RUN_DIR is stopped.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/.." && pwd))
KIT=${KIT:-$ROOT/../shared/peer-bench}
KIT=$(cd "$KIT" && pwd) || { echo "peer-bench kit not found at $KIT" >&2; exit 1; }
CONFIG=${CONFIG:-$HERE/shoal-peer.yaml}
RESULTS_DIR=${RESULTS_DIR:-$HERE/results}
STAMP=$(date +%Y-%m-%d-%H%M%S)
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2}
H1_PORT=19380 TCP_PORT=19381 IPERF_PORT_C=19385 H2_PORT=19382 H2H2_PORT=19383 GRPC_PORT=19390
TLS_PORT=19384 MTLS_PORT=19386
CAND_PORTS=($H1_PORT $TCP_PORT $IPERF_PORT_C $H2_PORT $H2H2_PORT $GRPC_PORT $TLS_PORT $MTLS_PORT)
TLS_CONFIG=${TLS_CONFIG:-$HERE/shoal-peer-tls.yaml}
GRPC_UPSTREAM=${GRPC_UPSTREAM:-rust}
GRPC_UP_PORT=18090

log() { echo "[bench $(date +%T)] $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }

STEPS=("$@")
((${#STEPS[@]})) || STEPS=(h1 tcp rss)
[[ ${STEPS[*]} == all ]] && STEPS=(h1 tcp rss h2 h2h2 grpc tls mtls)
WANT_GRPC_ECHO=0
for s in "${STEPS[@]}"; do
  case $s in
    h1 | tcp | rss | h2 | h2h2 | tls | mtls) ;;
    grpc) [[ $GRPC_UPSTREAM == rust ]] && WANT_GRPC_ECHO=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown step '$s' (use: h1 tcp rss h2 h2h2 grpc, or all)" >&2; exit 2 ;;
  esac
done
case $GRPC_UPSTREAM in rust | python) ;; *) echo "GRPC_UPSTREAM must be rust or python" >&2; exit 2 ;; esac
for tool in timeout taskset setsid ss wrk h2load iperf3 nginx haproxy nghttpx python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run $KIT/setup.sh" >&2; exit 1; }
done

# --- binary + config ----------------------------------------------------------
build=()
[[ -z ${SHOAL_BIN:-} ]] && build+=(-p shoal --bin shoal)
[[ $WANT_GRPC_ECHO == 1 && -z ${GRPC_ECHO_BIN:-} ]] && build+=(-p shoal-bench --bin grpc-echo)
if [[ ${NO_BUILD:-0} != 1 ]] && ((${#build[@]})); then
  log "cargo build --release ${build[*]} (no-op if up to date)"
  (cd "$ROOT" && cargo build --release "${build[@]}")
fi
SHOAL_BIN=${SHOAL_BIN:-$ROOT/target/release/shoal}
GRPC_ECHO_BIN=${GRPC_ECHO_BIN:-$ROOT/target/release/grpc-echo}
[[ -x $SHOAL_BIN ]] || { echo "no Shoal binary at $SHOAL_BIN" >&2; exit 1; }
[[ $WANT_GRPC_ECHO == 0 || -x $GRPC_ECHO_BIN ]] || { echo "no grpc-echo binary at $GRPC_ECHO_BIN" >&2; exit 1; }
CONFIG=$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")
# the kit word-splits CANDIDATE_CMD
[[ $SHOAL_BIN$CONFIG != *[[:space:]]* ]] || { echo "paths must not contain whitespace: $SHOAL_BIN $CONFIG" >&2; exit 1; }
"$SHOAL_BIN" validate "$CONFIG" >&2
# The kit pins the candidate to PROXY_CPUS (CPU 1) with taskset; --no-pin keeps Shoal from
# re-pinning its worker to core 0. `workers: 1` comes from the config.
# NO_COLOR: plain text in the saved Shoal log (tracing-subscriber honours it).
CANDIDATE_CMD="env NO_COLOR=1 $SHOAL_BIN run --config $CONFIG --no-pin"
case ${SHOAL_DRIVER:-auto} in
  auto) ;;
  epoll) CANDIDATE_CMD="env MONOIO_FORCE_LEGACY_DRIVER=1 NO_COLOR=1 $SHOAL_BIN run --config $CONFIG --no-pin" ;;
  *) echo "SHOAL_DRIVER must be auto or epoll" >&2; exit 2 ;;
esac
mkdir -p "$RESULTS_DIR"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- one step = one kit invocation under timeout -------------------------------
CHILD= STEP_RUN_DIR=
cleanup_step() { # stop whatever is still recorded in our private RUN_DIR (normally nothing)
  [[ -n $STEP_RUN_DIR && -d $STEP_RUN_DIR ]] || return 0
  if compgen -G "$STEP_RUN_DIR/pids/*" >/dev/null; then
    log "stopping leftovers: $(cd "$STEP_RUN_DIR/pids" && echo *)"
    (RUN_DIR=$STEP_RUN_DIR; source "$KIT/lib.sh"; stop_all)
  fi
  if [[ ${KEEP_RUN_DIR:-0} == 1 ]]; then log "kept $STEP_RUN_DIR"; else rm -rf "$STEP_RUN_DIR"; fi
  STEP_RUN_DIR=
}
on_signal() {
  log "interrupted: stopping the kit"
  [[ -n $CHILD ]] && kill -TERM "$CHILD" 2>/dev/null && wait "$CHILD" 2>/dev/null
  cleanup_step
  exit 130
}
trap on_signal INT TERM
trap cleanup_step EXIT

run_step() { # run_step NAME LIMIT_S KIT_SCRIPT [PORT...]; env for the kit is already exported
  local name=$1 limit=$2 script=$3; shift 3
  local out=$RESULTS_DIR/$STAMP-$name.txt shoal_log=$RESULTS_DIR/$STAMP-$name-shoal.log rc=0 p
  for p in "${CAND_PORTS[@]}" $([[ $name == grpc ]] && echo $GRPC_UP_PORT); do
    port_free "$p" || { log "port $p is already in use (another Shoal or kit run?); skipping $name"; return 1; }
  done
  STEP_RUN_DIR=$(mktemp -d /tmp/shoal-bench.XXXXXX)
  chmod 755 "$STEP_RUN_DIR"   # nginx workers (user nobody) serve $RUN_DIR/www (/1k, /64k); certs/ stays 700
  log "$name: $script $* (limit ${limit}s, RUN_DIR $STEP_RUN_DIR) -> $out"
  if [[ $name == grpc && $GRPC_UPSTREAM == rust ]]; then
    grpc_preflight || { log "grpc: preflight failed, not running the kit"; cleanup_step; return 1; }
  fi
  {
    echo "# shoal bench/run.sh $name  $(date -Is)  host=$(hostname)  nproc=$(nproc)"
    echo "# shoal: $SHOAL_BIN ($("$SHOAL_BIN" --version 2>/dev/null || echo '?')), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$([[ -n $(git -C "$ROOT" --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null) ]] && echo ' +dirty')"
    echo "# config: $CONFIG"
    echo "# CANDIDATE_CMD=$CANDIDATE_CMD"
    echo "# env: SHOAL_DRIVER=${SHOAL_DRIVER:-auto} ROUNDS=$ROUNDS DURATION=${DURATION:-} WARMUP=$WARMUP PATHS=${PATHS:-/} PIN=${PIN:-1} CONNS_H2=${CONNS_H2:-} STREAMS=${STREAMS:-} load=$(cut -d' ' -f1-3 /proc/loadavg)"
    if [[ $name == grpc && $GRPC_UPSTREAM == rust ]]; then
      echo "# grpc upstream on $GRPC_UP_PORT: $GRPC_ECHO_BIN --threads ${GRPC_ECHO_THREADS:-0} (the kit's python server fails to bind)"
    elif [[ $name == grpc ]]; then
      echo "# grpc upstream on $GRPC_UP_PORT: the kit's python grpc_echo.py"
    fi
  } >"$out"
  local cmd=$CANDIDATE_CMD
  if [[ $name == tls || $name == mtls ]]; then
    # The kit's test PKI, made now (the kit reuses it), and our TLS config pointing at it.
    kit gen_certs
    sed "s|@CERTS@|$STEP_RUN_DIR/certs|g" "$TLS_CONFIG" >"$STEP_RUN_DIR/shoal-tls.yaml"
    "$SHOAL_BIN" validate "$STEP_RUN_DIR/shoal-tls.yaml" >&2
    cmd=${CANDIDATE_CMD/$CONFIG/$STEP_RUN_DIR/shoal-tls.yaml}
    echo "# tls config: $TLS_CONFIG rendered to $STEP_RUN_DIR/shoal-tls.yaml; CANDIDATE_CMD=$cmd" >>"$out"
  fi
  # timeout: TERM after LIMIT (the kit traps it and stops its daemons), KILL 20 s later.
  RUN_DIR=$STEP_RUN_DIR CANDIDATE_CMD=$cmd \
    timeout -k 20 "$limit" "$KIT/$script" "$@" > >(tee -ai "$out") 2>&1 </dev/null &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=
  sleep 0.2  # let tee flush
  [[ -f $STEP_RUN_DIR/logs/candidate.out ]] && cp "$STEP_RUN_DIR/logs/candidate.out" "$shoal_log"
  cleanup_step
  ((rc == 124)) && log "$name: TIMED OUT after ${limit}s (see $out)"
  ((rc == 0)) || log "$name: kit exited with status $rc"
  check_shoal "$name" "$out" "$shoal_log"
  return $rc
}

kit() { # kit FUNCTION ARGS...: a lib.sh helper on our private RUN_DIR (pin/spawn/stop_one/wait_port)
  (RUN_DIR=$STEP_RUN_DIR; source "$KIT/lib.sh"; "$@")
}

# grpc with GRPC_UPSTREAM=rust: start grpc-echo on 18090 (recorded in our RUN_DIR, so the kit's
# stop_all stops it with everything else; its setsid process group is what the kit charges
# the `direct` row's CPU to), then check real gRPC calls through a throwaway Shoal on 19390:
# h2load counts any HTTP 200 as success, and Shoal reports upstream failures as 200 +
# grpc-status, so the kit's error column alone would not notice a broken gRPC path.
grpc_preflight() {
  local n=2000 msg=hello-grpc-benchmark out=$STEP_RUN_DIR/preflight-h2load.out ok=0 data
  kit spawn bench-grpc-echo "${UPSTREAM_CPUS:-0-1}" "$GRPC_ECHO_BIN" --listen "127.0.0.1:$GRPC_UP_PORT" --threads "${GRPC_ECHO_THREADS:-0}"
  kit wait_port $GRPC_UP_PORT 10 || { cat "$STEP_RUN_DIR/logs/bench-grpc-echo.out" >&2; return 1; }
  timeout 10 python3 "$KIT/tools/grpc_echo.py" --check $GRPC_UP_PORT >&2 || return 1
  # shellcheck disable=SC2086  # word splitting of the command line is intended
  kit spawn preflight-shoal "${PROXY_CPUS:-1}" $CANDIDATE_CMD
  if kit wait_port $GRPC_PORT 10 && timeout 10 python3 "$KIT/tools/grpc_echo.py" --check $GRPC_PORT >&2; then
    { printf '\x00\x00\x00\x00'; printf "\\x$(printf %02x ${#msg})"; printf '%s' "$msg"; } >"$STEP_RUN_DIR/grpc.bin"
    timeout 20 h2load -t1 -c4 -m16 -n $n -d "$STEP_RUN_DIR/grpc.bin" -H 'content-type: application/grpc' \
      -H 'te: trailers' "http://127.0.0.1:$GRPC_PORT/echo.Echo/Echo" >"$out" 2>&1 || true
    # every reply carries the echoed message: 5-byte gRPC frame header + msg in DATA frames
    data=$(awk '/^traffic:/ {for (i = 1; i <= NF; i++) if ($i == "data") {v = $(i - 1); gsub(/[()]/, "", v); print v}}' "$out")
    if grep -q "$n succeeded, 0 failed, 0 errored" "$out" && [[ $data == $((n * (5 + ${#msg}))) ]]; then ok=1
    else log "grpc preflight: h2load through Shoal (expected $n succeeded and $((n * (5 + ${#msg}))) data bytes):"; cat "$out" >&2; fi
  fi
  kit stop_one preflight-shoal
  ((ok)) && log "grpc preflight: grpc-echo on $GRPC_UP_PORT and $n gRPC calls through Shoal $GRPC_PORT OK"
  ((ok)) || { log "grpc preflight Shoal log:"; cat "$STEP_RUN_DIR/logs/preflight-shoal.out" >&2; }
  ((ok))
}

check_shoal() { # check_shoal NAME OUT SHOAL_LOG: point out Shoal-side trouble
  local name=$1 out=$2 slog=$3 raw=${2%.txt}.raw bad
  if [[ ! -s $slog ]]; then log "$name: no Shoal log (did it start?)"; return 0; fi
  grep -qi 'panic' "$slog" && log "$name: Shoal PANICKED, see $slog"
  grep -qE ' (ERROR|WARN) ' "$slog" && log "$name: Shoal logged warnings/errors: $(grep -cE ' (ERROR|WARN) ' "$slog") lines in $slog"
  grep -qE ' stopped$' "$slog" || log "$name: Shoal did not log a clean stop (killed or crashed?), see $slog"
  if [[ -f $raw ]]; then
    bad=$(awk '/^RESULT / && / name=cand/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
                 if (f["err"] + 0 > 0 || f["rps"] + 0 == 0) print f["test"] " round " f["round"] ": rps=" f["rps"] " err=" f["err"] }' "$raw")
    [[ -z $bad ]] || log "$name: Shoal errors under load:"$'\n'"$bad"
  fi
  return 0
}

# Generous caps: every target x test x (warmup + rounds x (duration + ~3 s tool start/stop)),
# x1.5, + 3 min for stack start/stop. A normal run never gets near them.
cap() { # cap TARGETS TESTS DURATION
  echo $(((($1 * $2 * (WARMUP + ROUNDS * ($3 + 3))) * 3 / 2) + 180))
}

status=0
for s in "${STEPS[@]}"; do
  case $s in
    h1)
      d=${DURATION:-10} n=$(wc -w <<<"${PATHS:-/}")
      PROTO=h1 DURATION=$d OUT=$RESULTS_DIR/$STAMP-h1.raw ROUNDS=$ROUNDS WARMUP=$WARMUP \
        run_step h1 "${BENCH_TIMEOUT:-$(cap 5 "$n" "$d")}" compare.sh $H1_PORT || status=1 ;;
    tcp)
      d=${DURATION:-5} t=2; [[ ${TCP_PYBULK:-0} == 1 ]] && t=3
      PROTO=tcp DURATION=$d OUT=$RESULTS_DIR/$STAMP-tcp.raw ROUNDS=$ROUNDS WARMUP=$WARMUP \
        run_step tcp "${BENCH_TIMEOUT:-$(cap 4 "$t" "$d")}" compare.sh $TCP_PORT || status=1 ;;
    rss)
      run_step rss "${BENCH_TIMEOUT:-$((4 * (${HOLD:-6} + 70) + 180))}" rss.sh $H1_PORT || status=1 ;;
    h2)
      d=${DURATION:-10} n=$(wc -w <<<"${PATHS:-/}")
      PROTO=h2 DURATION=$d OUT=$RESULTS_DIR/$STAMP-h2.raw ROUNDS=$ROUNDS WARMUP=$WARMUP \
        run_step h2 "${BENCH_TIMEOUT:-$(cap 5 "$n" "$d")}" compare.sh $H2_PORT || status=1 ;;
    h2h2)
      d=${DURATION:-5} n=$(wc -w <<<"${PATHS:-/}")
      PROTO=h2h2 DURATION=$d OUT=$RESULTS_DIR/$STAMP-h2h2.raw ROUNDS=$ROUNDS WARMUP=$WARMUP \
        run_step h2h2 "${BENCH_TIMEOUT:-$(cap 4 "$n" "$d")}" compare.sh $H2H2_PORT || status=1 ;;
    grpc)
      d=${DURATION:-5}
      PROTO=grpc DURATION=$d OUT=$RESULTS_DIR/$STAMP-grpc.raw ROUNDS=$ROUNDS WARMUP=$WARMUP \
        CONNS_H2=${CONNS_H2:-4} STREAMS=${STREAMS:-16} \
        run_step grpc "${BENCH_TIMEOUT:-$(cap 5 1 "$d")}" compare.sh $GRPC_PORT || status=1 ;;
    tls | mtls)
      # 4 targets (no direct) x 4 tests (keep-alive h1 + h2 or curl, handshakes, conn+GET)
      d=${DURATION:-5} port=$TLS_PORT; [[ $s == mtls ]] && port=$MTLS_PORT
      PROTO=$s DURATION=$d OUT=$RESULTS_DIR/$STAMP-$s.raw ROUNDS=$ROUNDS WARMUP=$WARMUP \
        run_step "$s" "${BENCH_TIMEOUT:-$(cap 4 4 "$d")}" compare.sh "$port" || status=1 ;;
  esac
done
log "done; output in $RESULTS_DIR/$STAMP-*"
exit $status
