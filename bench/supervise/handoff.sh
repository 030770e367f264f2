#!/usr/bin/env bash
# bench/supervise/handoff.sh: the time from `aviary switch-producer --execute` to the new
# producer producing, on sim nodes (docs/producers.md, "switch-producer").
#
# What runs (all on 127.0.0.1, every wait bounded, everything started is stopped on exit):
# `aviary serve`, and two `aviary supervise --bp-mode --serve` sidecars (bp-a, bp-b), each running
# aviary's sim node with a block every BLOCK_MS; the sidecars register themselves in serve's
# pool. bp-a is given production (the resume-production action), then ROUNDS hand-overs
# alternate a->b, b->a, each `aviary switch-producer --from X --to Y --execute`. A poller reads
# both nodes' own GET /v1/producer/paused about every millisecond on keep-alive connections and
# notes when the target first answers false (producing); it also counts reads in which both
# answered false (two producers at once: must be 0). Printed per round and as median / p90 /
# max: target producing - t0 (t0 = just before the CLI starts), and CLI returned - t0 (the job
# ends after its verify step has seen the new producer's head grow). Each round checks the CLI's
# exit status and that the lease's fence grew by one.
#
# Reproduce: bench/supervise/handoff.sh (ROUNDS=20 BLOCK_MS=100 BUILD=build; KEEP_TMP=1 keeps the
# temp dir). Figures: bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
ROUNDS=${ROUNDS:-20}
BLOCK_MS=${BLOCK_MS:-100}
AVIARY=$(realpath "$BUILD/aviary")
[[ -x "$AVIARY" ]] || {
    echo "handoff.sh: build $AVIARY first" >&2
    exit 1
}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/aviary-handoff.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ "${KEEP_TMP:-}" == 1 ]] || rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_for SECONDS COMMAND...: polls every 50 ms until COMMAND succeeds, or fails with a message.
wait_for() {
    local limit=$1 i
    shift
    for ((i = 0; i < limit * 20; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "handoff.sh: timed out after ${limit}s waiting for: $*" >&2
    exit 1
}
paused_is() { [[ $(curl -sf "http://127.0.0.1:$1/v1/producer/paused") == "$2" ]]; }

SERVE_PORT=$(free_port)
printf 'server: {listen: "127.0.0.1:%s"}\n' "$SERVE_PORT" >"$TMP/serve.yaml"
"$AVIARY" serve --config "$TMP/serve.yaml" --data-dir "$TMP/serve" >"$TMP/serve.log" 2>&1 &
pids+=($!)
SERVE=http://127.0.0.1:$SERVE_PORT
wait_for 30 curl -sf "$SERVE/healthz"

declare -A NODE_PORT
for n in a b; do
    NODE_PORT[$n]=$(free_port)
    mkdir -p "$TMP/$n"
    "$AVIARY" supervise --chain sim --name "bp-$n" --bp-mode --proxy "" --control 127.0.0.1:0 \
        --upstream "http://127.0.0.1:${NODE_PORT[$n]}" --data-dir "$TMP/$n/data" \
        --state-dir "$TMP/$n/state" --serve "$SERVE" --producer-key eosio.bp -- \
        "$AVIARY" sim-node --version v1 --data-dir "$TMP/$n/data" --port-file "$TMP/$n/port" \
        --listen "127.0.0.1:${NODE_PORT[$n]}" --block-interval "${BLOCK_MS}ms" \
        >"$TMP/$n/out" 2>"$TMP/$n/err" &
    pids+=($!)
done
for n in a b; do
    wait_for 30 curl -sf "$SERVE/api/v1/nodes/bp-$n"
    wait_for 30 paused_is "${NODE_PORT[$n]}" true
    wait_for 30 grep -q "production unknown -> paused" "$TMP/$n/err"
done
"$AVIARY" --server "$SERVE" run-action bp-a resume-production --wait >/dev/null
wait_for 10 paused_is "${NODE_PORT[a]}" false

fence() { curl -sf "$SERVE/api/v1/producers" | python3 -c 'import json,sys; print(json.load(sys.stdin)["producers"][0]["fence"])'; }

# The poller: reads both nodes until told to stop (a file appears); prints "first_false_ns
# overlaps reads" for the target (argument 2: 0 for a, 1 for b).
cat >"$TMP/poll.py" <<'EOF'
import http.client, os, sys, time
ports = [int(sys.argv[1]), int(sys.argv[2])]
target = int(sys.argv[3])
stop = sys.argv[4]
conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=2) for p in ports]
def paused(i):
    conns[i].request("GET", "/v1/producer/paused")
    return conns[i].getresponse().read().strip() == b"true"
first = 0
overlaps = reads = 0
deadline = time.time() + 60
while not os.path.exists(stop) and time.time() < deadline:
    states = [paused(0), paused(1)]
    reads += 1
    now = time.time_ns()
    if not states[0] and not states[1]:
        overlaps += 1
    if first == 0 and not states[target]:
        first = now
    time.sleep(0.001)
print(first, overlaps, reads)
EOF

declare -a TO_PRODUCING TO_CLI
total_overlaps=0
from=a to=b
before=$(fence)
for ((round = 1; round <= ROUNDS; round++)); do
    rm -f "$TMP/stop"
    target_index=$([[ $to == a ]] && echo 0 || echo 1)
    python3 "$TMP/poll.py" "${NODE_PORT[a]}" "${NODE_PORT[b]}" "$target_index" "$TMP/stop" >"$TMP/poll.out" &
    poller=$!
    sleep 0.05 # the poller's connections are up before t0
    t0=$(date +%s%N)
    # --max-lag: sim nodes that follow do not sync with each other, so heights differ by their
    # start times.
    "$AVIARY" --server "$SERVE" switch-producer --from "bp-$from" --to "bp-$to" --execute \
        --max-lag 100000 >"$TMP/round-$round.log" 2>&1 || {
        echo "handoff.sh: round $round failed:" >&2
        cat "$TMP/round-$round.log" >&2
        exit 1
    }
    t_cli=$(date +%s%N)
    wait_for 10 paused_is "${NODE_PORT[$to]}" false
    touch "$TMP/stop"
    wait "$poller"
    read -r first overlaps reads <"$TMP/poll.out"
    ((first > 0)) || {
        echo "handoff.sh: round $round: the poller never saw bp-$to produce" >&2
        exit 1
    }
    now_fence=$(fence)
    ((now_fence == before + 1)) || {
        echo "handoff.sh: round $round: fence $before -> $now_fence" >&2
        exit 1
    }
    before=$now_fence
    TO_PRODUCING+=($(((first - t0) / 1000)))
    TO_CLI+=($(((t_cli - t0) / 1000)))
    total_overlaps=$((total_overlaps + overlaps))
    printf 'round %2d bp-%s -> bp-%s: producing after %6.1f ms, CLI returned after %6.1f ms (%d reads, %d with two producing)\n' \
        "$round" "$from" "$to" "$(awk -v u="${TO_PRODUCING[-1]}" 'BEGIN {print u / 1000}')" \
        "$(awk -v u="${TO_CLI[-1]}" 'BEGIN {print u / 1000}')" "$reads" "$overlaps"
    tmp=$from from=$to to=$tmp
done

stats() { # microseconds on stdin -> "median p90 max" in ms
    sort -n | awk '{v[NR] = $1} END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        p = v[int(NR * 0.9 + 0.999)]
        printf "median %.1f ms, p90 %.1f ms, max %.1f ms", m / 1000, p / 1000, v[NR] / 1000 }'
}
echo
echo "== switch-producer --execute, $ROUNDS hand-overs between two sim nodes (a block every ${BLOCK_MS} ms), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "to the new producer producing: $(printf '%s\n' "${TO_PRODUCING[@]}" | stats)"
echo "to the CLI's return (verified): $(printf '%s\n' "${TO_CLI[@]}" | stats)"
echo "reads with two nodes producing: $total_overlaps"
