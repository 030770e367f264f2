#!/usr/bin/env bash
# bench/supervise/switch_bench.sh: the time from `aviary switch-producer --execute` to the new
# producer producing, on aviary's sim nodes (docs/producers.md, "switch-producer").
#
# Reproduce (from anywhere; the binary is $BUILD/aviary under the repository, not built here):
#   bench/supervise/switch_bench.sh
# knobs: ROUNDS=20 (hand-overs, alternating bp-a -> bp-b, bp-b -> bp-a)
#        BLOCK_MS=100 (the sim nodes' block interval)
#        BUILD=build (the build directory, relative to the repository or absolute)
#        KEEP_TMP=1 (keep the temp dir: serve's and the sidecars' logs, each round's CLI output)
#        MAX_LAG=100000 (switch-producer --max-lag; sim nodes do not sync with each other, so
#                        their heights differ by their start times; the CLI's default is 3)
#        DRY_ROUNDS=5 (dry runs timed for reference; 0 skips them)
#
# What runs, all on 127.0.0.1: `aviary serve`, two `aviary supervise --bp-mode --serve` sidecars
# (bp-a, bp-b) each running `aviary sim-node`; the sidecars register in serve's pool. bp-a gets
# production (run-action resume-production --wait). Each round: a python3 poller opens keep-alive
# connections to both nodes' GET /v1/producer/paused and reads them about every millisecond;
# once it is polling, t0 is taken and `aviary switch-producer --from X --to Y --execute` runs.
# Recorded: the first read in which the target answers false (producing), the CLI's return, and
# every read in which both nodes answered false (two producers at once; must be 0). Each round
# checks the CLI's exit status 0, that the lease's fence grew by exactly 1 and that the source
# ends paused. Every wait is bounded; everything started is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
[[ "$BUILD" == /* ]] || BUILD="$ROOT/$BUILD"
ROUNDS=${ROUNDS:-20}
BLOCK_MS=${BLOCK_MS:-100}
MAX_LAG=${MAX_LAG:-100000}
DRY_ROUNDS=${DRY_ROUNDS:-5}
AVIARY="$BUILD/aviary"

die() {
    echo "switch_bench.sh: $*" >&2
    exit 1
}
[[ -x "$AVIARY" ]] || die "no $AVIARY (build it first)"
command -v python3 >/dev/null || die "python3 is needed"
command -v curl >/dev/null || die "curl is needed"
((ROUNDS >= 1)) || die "ROUNDS must be >= 1"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/aviary-switch-bench.XXXXXX")
SERVE_PID=""
SIDECAR_PIDS=()
POLLER_PID=""
cleanup() {
    local pid
    [[ -z "$POLLER_PID" ]] || kill -TERM "$POLLER_PID" 2>/dev/null || true
    # The sidecars stop their nodes on SIGTERM; serve goes last.
    for pid in "${SIDECAR_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${SIDECAR_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n "$SERVE_PID" ]]; then
        kill -TERM "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    if [[ "${KEEP_TMP:-}" == 1 ]]; then
        echo "switch_bench.sh: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for SECONDS WHAT COMMAND...: runs COMMAND every 50 ms until it succeeds; dies after SECONDS.
wait_for() {
    local limit=$1 what=$2 i
    shift 2
    for ((i = 0; i < limit * 20; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    die "timed out after ${limit}s waiting for $what (logs: $TMP; KEEP_TMP=1 keeps them)"
}
paused_is() { [[ "$(curl -sf --max-time 2 "http://127.0.0.1:$1/v1/producer/paused")" == "$2" ]]; }
alive() { kill -0 "$1"; }
fence() {
    curl -sf --max-time 5 "$SERVE/api/v1/producers" | python3 -c '
import json, sys
d = json.load(sys.stdin)
ps = d["producers"] if isinstance(d, dict) else d
print(max(int(p["fence"]) for p in ps) if ps else 0)'
}

# --- serve --------------------------------------------------------------------------------------
SERVE_PORT=$(free_port)
SERVE=http://127.0.0.1:$SERVE_PORT
printf 'server: {listen: "127.0.0.1:%s"}\n' "$SERVE_PORT" >"$TMP/serve.yaml"
"$AVIARY" serve --config "$TMP/serve.yaml" --data-dir "$TMP/serve" >"$TMP/serve.log" 2>&1 &
SERVE_PID=$!
wait_for 30 "serve's /healthz on $SERVE" curl -sf --max-time 2 "$SERVE/healthz"

# --- two sidecars in block-producer mode, each with a sim node -----------------------------------
declare -A NODE_PORT SIDECAR_PID
for n in a b; do
    NODE_PORT[$n]=$(free_port)
    mkdir -p "$TMP/$n"
    "$AVIARY" supervise --chain sim --name "bp-$n" --bp-mode --proxy "" --control 127.0.0.1:0 \
        --upstream "http://127.0.0.1:${NODE_PORT[$n]}" --data-dir "$TMP/$n/data" \
        --state-dir "$TMP/$n/state" --serve "$SERVE" --producer-key eosio.bp -- \
        "$AVIARY" sim-node --version v1 --data-dir "$TMP/$n/data" --port-file "$TMP/$n/port" \
        --listen "127.0.0.1:${NODE_PORT[$n]}" --block-interval "${BLOCK_MS}ms" \
        >"$TMP/$n/sidecar.out" 2>"$TMP/$n/sidecar.err" &
    SIDECAR_PID[$n]=$!
    SIDECAR_PIDS+=($!)
done
for n in a b; do
    wait_for 30 "bp-$n in serve's pool" curl -sf --max-time 2 "$SERVE/api/v1/nodes/bp-$n"
    wait_for 30 "bp-$n's sidecar to see its node paused" grep -q "production unknown -> paused" "$TMP/$n/sidecar.err"
    wait_for 30 "bp-$n's node to answer paused=true" paused_is "${NODE_PORT[$n]}" true
    alive "${SIDECAR_PID[$n]}" 2>/dev/null || die "bp-$n's sidecar exited (see $TMP/$n/sidecar.err)"
done

"$AVIARY" --server "$SERVE" run-action bp-a resume-production --wait >"$TMP/resume.log" 2>&1 ||
    die "resume-production on bp-a failed: $(cat "$TMP/resume.log")"
wait_for 30 "bp-a's node to answer paused=false" paused_is "${NODE_PORT[a]}" false
paused_is "${NODE_PORT[b]}" true || die "bp-b is producing beside bp-a before the first round"

# --- the poller --------------------------------------------------------------------------------
# poll.py A_PORT B_PORT TARGET(0 = a, 1 = b) READY_FILE STOP_FILE: keeps one keep-alive connection
# per node, reads both about every millisecond, writes READY_FILE after its first pair of reads,
# and stops once STOP_FILE exists (or after 60 s). Prints "first_false_ns overlaps reads":
# first_false_ns is time.time_ns() (the same clock as date +%s%N) at the first read in which the
# target answered false; overlaps counts read pairs in which both answered false.
cat >"$TMP/poll.py" <<'EOF'
import http.client, os, sys, time
ports = [int(sys.argv[1]), int(sys.argv[2])]
target, ready, stop = int(sys.argv[3]), sys.argv[4], sys.argv[5]
conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=2) for p in ports]
def paused(i):
    for attempt in (0, 1):
        try:
            conns[i].request("GET", "/v1/producer/paused")
            r = conns[i].getresponse()
            body = r.read().strip()
            if r.status != 200:
                raise RuntimeError(f"node {i}: HTTP {r.status} {body!r}")
            if body not in (b"true", b"false"):
                raise RuntimeError(f"node {i}: unexpected body {body!r}")
            return body == b"true"
        except (http.client.HTTPException, OSError):
            if attempt:
                raise
            conns[i].close()  # the server closed the keep-alive connection: reconnect once
first = 0
overlaps = reads = 0
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    # Alternate which node is read first so neither is always the older read of the pair.
    order = (0, 1) if reads % 2 == 0 else (1, 0)
    states = [None, None]
    for i in order:
        states[i] = paused(i)
    now = time.time_ns()
    reads += 1
    if reads == 1:
        open(ready, "w").close()
    if not states[0] and not states[1]:
        overlaps += 1
    if first == 0 and not states[target]:
        first = now
    if first and os.path.exists(stop):
        break
    time.sleep(0.001)
print(first, overlaps, reads)
EOF

# --- rounds ------------------------------------------------------------------------------------
TO_PRODUCING=() # microseconds
TO_CLI=()
TOTAL_OVERLAPS=0
TOTAL_READS=0
from=a to=b
before=$(fence)
echo "switch_bench.sh: serve $SERVE, bp-a node :${NODE_PORT[a]}, bp-b node :${NODE_PORT[b]}, lease fence $before, temp $TMP" >&2
for ((round = 1; round <= ROUNDS; round++)); do
    rm -f "$TMP/ready" "$TMP/stop"
    target_index=$([[ $to == a ]] && echo 0 || echo 1)
    python3 "$TMP/poll.py" "${NODE_PORT[a]}" "${NODE_PORT[b]}" "$target_index" "$TMP/ready" "$TMP/stop" \
        >"$TMP/poll.out" 2>"$TMP/poll.err" &
    POLLER_PID=$!
    wait_for 10 "round $round's poller to start" test -e "$TMP/ready"
    t0=$(date +%s%N)
    rc=0
    "$AVIARY" --server "$SERVE" switch-producer --from "bp-$from" --to "bp-$to" --execute \
        --max-lag "$MAX_LAG" >"$TMP/round-$round.log" 2>&1 || rc=$?
    t_cli=$(date +%s%N)
    touch "$TMP/stop"
    if ((rc != 0)); then
        cat "$TMP/round-$round.log" >&2
        die "round $round (bp-$from -> bp-$to): switch-producer exited $rc"
    fi
    # The poller stops once it has seen the target producing (bounded by its own 60 s deadline).
    wait "$POLLER_PID" || die "round $round: the poller failed: $(cat "$TMP/poll.err")"
    POLLER_PID=""
    read -r first overlaps reads <"$TMP/poll.out"
    ((first > 0)) || die "round $round: the poller never saw bp-$to produce"
    paused_is "${NODE_PORT[$from]}" true || die "round $round: bp-$from is not paused after the hand-over"
    now_fence=$(fence)
    ((now_fence == before + 1)) || die "round $round: the lease fence went $before -> $now_fence (expected +1)"
    before=$now_fence
    TO_PRODUCING+=($(((first - t0) / 1000)))
    TO_CLI+=($(((t_cli - t0) / 1000)))
    TOTAL_OVERLAPS=$((TOTAL_OVERLAPS + overlaps))
    TOTAL_READS=$((TOTAL_READS + reads))
    printf 'round %2d bp-%s -> bp-%s: target producing %7.1f ms, CLI returned %7.1f ms, fence %s, %4d reads, %d with both producing\n' \
        "$round" "$from" "$to" "$(awk -v u="${TO_PRODUCING[-1]}" 'BEGIN { print u / 1000 }')" \
        "$(awk -v u="${TO_CLI[-1]}" 'BEGIN { print u / 1000 }')" "$now_fence" "$reads" "$overlaps"
    tmp=$from from=$to to=$tmp
done

# --- dry runs, for reference -------------------------------------------------------------------
DRY=()
for ((i = 1; i <= DRY_ROUNDS; i++)); do
    t0=$(date +%s%N)
    "$AVIARY" --server "$SERVE" switch-producer --from "bp-$from" --to "bp-$to" --max-lag "$MAX_LAG" \
        >"$TMP/dry-$i.log" 2>&1 || die "dry run $i failed: $(cat "$TMP/dry-$i.log")"
    DRY+=($((($(date +%s%N) - t0) / 1000)))
done
if ((DRY_ROUNDS > 0)); then
    [[ "$(fence)" == "$before" ]] || die "a dry run moved the lease fence"
    paused_is "${NODE_PORT[$from]}" false || die "a dry run stopped bp-$from producing"
fi

# stats: microseconds on stdin -> "median X ms, p90 Y ms, max Z ms" (p90: nearest rank)
stats() {
    sort -n | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        r = int(NR * 0.9); if (r < NR * 0.9) r++
        printf "median %7.1f ms, p90 %7.1f ms, max %7.1f ms", m / 1000, v[r] / 1000, v[NR] / 1000 }'
}
echo
echo "== switch-producer --execute: the time from the CLI's start (t0) to the new producer producing"
echo "   $ROUNDS hand-overs alternating bp-a -> bp-b, bp-b -> bp-a; aviary serve + 2 supervise --bp-mode sidecars,"
echo "   sim nodes with a block every ${BLOCK_MS} ms; target's GET /v1/producer/paused polled ~every 1 ms"
echo "   commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "t0 -> target answers paused=false: $(printf '%s\n' "${TO_PRODUCING[@]}" | stats)"
echo "t0 -> CLI returned (exit 0):       $(printf '%s\n' "${TO_CLI[@]}" | stats)"
if ((DRY_ROUNDS > 0)); then
    echo "dry run (no --execute), $DRY_ROUNDS runs: $(printf '%s\n' "${DRY[@]}" | stats)"
fi
echo "read pairs with both nodes producing: $TOTAL_OVERLAPS of $TOTAL_READS"
echo "block interval ${BLOCK_MS} ms, rounds $ROUNDS, lease fence grew by 1 each round"
