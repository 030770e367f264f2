#!/usr/bin/env bash
# bench/logs/instances.sh: logs with two `aviary serve` instances on one PostgreSQL (issue 16,
# docs/logs.md "On PostgreSQL"). Prints figures; it is never a timed test.
#
# 1. builds Release (aviary, logs_scale, lease_load, postgres_cluster) and starts a durable
#    PostgreSQL cluster (fsync and synchronous_commit on) in a temp dir, and instances A and B
#    on it;
# 2. the live tail's upload-to-delivery latency (TAIL_LINES lines 5 ms apart): tail and uploads
#    on A, then the tail on B with the uploads on A (told by LISTEN/NOTIFY);
# 3. lease ops/s and p99 on A at concurrency 32, alone and while logs pour into B over /ws
#    (4 connections, BATCH lines per upload): the logs' own writer and lock keep them apart.
#
# Knobs (environment): BUILD=build  DURATION=10  WARMUP=2  TAIL_LINES=2000  BATCH=1000
# BENCH_TMP=<parent of the temp dir, default $BUILD: a real disk>  SKIP_BUILD=1  KEEP_TMP=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
TAIL_LINES=${TAIL_LINES:-2000}
BATCH=${BATCH:-1000}
AVIARY=$BUILD/aviary
SCALE=$BUILD/bench/logs/logs_scale
LEASE_LOAD=$BUILD/bench/leases/lease_load
CLUSTER=$BUILD/tests/postgres_cluster

if [[ -z "${SKIP_BUILD:-}" ]]; then
    generator=()
    [[ -f "$BUILD/CMakeCache.txt" ]] || generator=(-G Ninja)
    cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DAVIARY_BENCH=ON >/dev/null
    cmake --build "$BUILD" --target aviary logs_scale lease_load postgres_cluster
fi
for program in "$AVIARY" "$SCALE" "$LEASE_LOAD" "$CLUSTER"; do
    [[ -x "$program" ]] || {
        echo "bench/logs/instances: $program was not built" >&2
        exit 1
    }
done

TMP=$(mktemp -d "$(realpath "${BENCH_TMP:-$BUILD}")/bench-logs-instances.XXXXXX")
chmod 755 "$TMP"  # the cluster runs as postgres when this runs as root
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    "$CLUSTER" stop "$TMP/pg" >/dev/null 2>&1 || true
    [[ -n "${KEEP_TMP:-}" ]] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

field() { grep '^RESULT ' "$1" | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }

printf '== machine\n'
printf '  %s, %s cores; temp dir on %s; aviary at commit %s; load average %s\n' "$(uname -sr)" \
    "$(nproc)" "$(df -PT "$TMP" | awk 'NR==2 {print $2}')" "$(git rev-parse --short HEAD)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
"$CLUSTER" start "$TMP/pg" --durable >/dev/null
PG_URL=$(cat "$TMP/pg/url")
printf '  postgres: %s (fsync on, synchronous_commit on)\n' "$PG_URL"

# start NAME: starts an instance on the cluster and sets ADDR to its address (not printed: a
# command substitution would run it in a subshell, and its pid would miss the cleanup).
start() {
    local dir="$TMP/$1"
    mkdir -p "$dir"
    {
        echo "instance: $1"
        echo "log: {level: warn}"
        echo "server: {websocket: {max_message_bytes: 64MiB}}"
        echo "store: {url: '$PG_URL'}"
        echo "logs: {logs_timewindow: 1h, max_upload: $BATCH}"
        echo "fleet:"
        echo "  nodes:"
        for i in $(seq 0 31); do echo "    - {name: node-$i, driver: sim}"; done
    } >"$dir/aviary.yaml"
    "$AVIARY" serve --config "$dir/aviary.yaml" --listen 127.0.0.1:0 --data-dir "$dir" \
        >"$dir/log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 200); do
        local addr
        addr=$(grep -so 'serving on http://[0-9.:]*' "$dir/log" | sed 's|serving on http://||' || true)
        if [[ -n "$addr" ]]; then
            ADDR=$addr
            return 0
        fi
        sleep 0.05
    done
    cat "$dir/log" >&2
    echo "bench/logs/instances: serve $1 did not start" >&2
    exit 1
}

start serve-a
A=$ADDR
start serve-b
B=$ADDR
printf '  serve-a at %s, serve-b at %s\n' "$A" "$B"

printf '\n== 2. the live tail, upload to delivery (%s lines, 5 ms apart)\n' "$TAIL_LINES"
printf -- '-- tail on A, uploads to A\n'
"$SCALE" tail --addr "$A" --lines "$TAIL_LINES" | tee "$TMP/tail-same.txt"
printf -- '-- tail on B, uploads to A\n'
"$SCALE" tail --addr "$B" --upload-addr "$A" --lines "$TAIL_LINES" | tee "$TMP/tail-cross.txt"

printf '\n== 3. leases on A at concurrency 32, alone and while logs pour into B\n'
"$LEASE_LOAD" --addr "$A" --concurrency 32 --duration "$DURATION" --warmup "$WARMUP" \
    --label alone | tee "$TMP/alone.txt"
"$SCALE" flood --addr "$B" --seconds "$((DURATION + WARMUP + 1))" --batch "$BATCH" \
    >"$TMP/flood.txt" 2>&1 &
flood=$!
"$LEASE_LOAD" --addr "$A" --concurrency 32 --duration "$DURATION" --warmup "$WARMUP" \
    --label beside-ingest | tee "$TMP/beside.txt"
wait "$flood" || true
cat "$TMP/flood.txt"

printf '\n== results (%s cores; load average now %s)\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| what | figure |\n|---|---|\n'
printf '| tail on A, lines uploaded to A | p50 %s ms, p99 %s ms |\n' \
    "$(field "$TMP/tail-same.txt" p50_ms)" "$(field "$TMP/tail-same.txt" p99_ms)"
printf '| tail on B, lines uploaded to A | p50 %s ms, p99 %s ms |\n' \
    "$(field "$TMP/tail-cross.txt" p50_ms)" "$(field "$TMP/tail-cross.txt" p99_ms)"
printf '| leases on A alone, c=32 | %s ops/s, p99 %s ms |\n' \
    "$(field "$TMP/alone.txt" ops_per_s)" "$(field "$TMP/alone.txt" p99_ms)"
printf '| leases on A while B ingests | %s ops/s, p99 %s ms; ingest %s lines/s |\n' \
    "$(field "$TMP/beside.txt" ops_per_s)" "$(field "$TMP/beside.txt" p99_ms)" \
    "$(field "$TMP/flood.txt" lines_per_s)"
