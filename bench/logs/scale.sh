#!/usr/bin/env bash
# bench/logs/scale.sh: the log store at scale (issue 16). Prints figures; it is never a test.
#
#   bench/logs/scale.sh
#
# Builds Release (aviary, logs_scale, lease_load), starts one `aviary serve` on a real disk
# (SQLite, store and logs synchronous=full, 32 sim nodes, io_threads 2, logs kept 48 h) and:
# 1. leases alone: lease_load at concurrency 32 for DURATION s: ops/s, p50, p99;
# 2. leases while logs pour in: the same, while logs_scale floods /ws with uploads of BATCH
#    lines on 4 connections as fast as serve acknowledges them: the lease p99 beside ingest;
# 3. preload: LINES lines over /ws, their times spread over the last 24 h, 1,000 senders;
# 4. queries: QUERIES random 1-hour windows of those LINES, newest 100, by service, with no
#    filter, with contains= and with regex= (the last two read every line of the hour);
# 5. the live tail: upload-to-delivery latency of TAIL_LINES lines sent 5 ms apart.
#
# Knobs (environment): BUILD=build  LINES=10000000  BATCH=5000  DURATION=10  WARMUP=2
# QUERIES=50  TAIL_LINES=2000  BENCH_TMP=<parent of the temp dir, default $BUILD: a real disk>
# SKIP_BUILD=1  KEEP_TMP=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
LINES=${LINES:-10000000}
BATCH=${BATCH:-5000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
QUERIES=${QUERIES:-50}
TAIL_LINES=${TAIL_LINES:-2000}
NODES=32

die() {
    printf 'bench/logs/scale: %s\n' "$*" >&2
    exit 1
}

if [[ -z "${SKIP_BUILD:-}" ]]; then
    generator=()
    [[ -f "$BUILD/CMakeCache.txt" ]] || generator=(-G Ninja)
    cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DAVIARY_BENCH=ON >/dev/null
    cmake --build "$BUILD" --target aviary logs_scale lease_load
fi
AVIARY=$BUILD/aviary
SCALE=$BUILD/bench/logs/logs_scale
LEASE_LOAD=$BUILD/bench/leases/lease_load
for program in "$AVIARY" "$SCALE" "$LEASE_LOAD"; do
    [[ -x "$program" ]] || die "$program was not built"
done

BENCH_TMP=${BENCH_TMP:-$BUILD}
mkdir -p "$BENCH_TMP"
tmp=$(mktemp -d "$(realpath "$BENCH_TMP")/bench-logs-scale.XXXXXX")
pid=""
cleanup() {
    if [[ -n "$pid" ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    [[ -n "${KEEP_TMP:-}" ]] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

field() { grep '^RESULT ' "$1" | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }

printf '== machine\n'
printf '  %s, %s cores, %s; disk under %s: %s\n' "$(uname -sr)" "$(nproc)" \
    "$(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)" "$tmp" \
    "$(df -hT "$tmp" | awk 'NR==2 {print $2}')"
printf '  aviary commit %s; load average before the run: %s\n' \
    "$(git rev-parse --short HEAD 2>/dev/null || echo "?")" "$(cut -d' ' -f1-3 /proc/loadavg)"

{
    echo "data_dir: $tmp/serve"
    echo "log: {level: warn}"
    echo "server:"
    echo "  listen: 127.0.0.1:0"
    echo "  io_threads: 2"
    echo "  max_body_bytes: 16MiB"
    echo "  websocket: {max_message_bytes: 64MiB}"
    echo "store: {synchronous: full}"
    echo "logs:"
    echo "  logs_timewindow: 48h"
    echo "  max_upload: $BATCH"
    echo "fleet:"
    echo "  nodes:"
    for i in $(seq 0 $((NODES - 1))); do
        echo "    - {name: node-$i, driver: sim, image_tag: v1.0.0}"
    done
} >"$tmp/aviary.yaml"
mkdir -p "$tmp/serve"
"$AVIARY" serve --config "$tmp/aviary.yaml" --data-dir "$tmp/serve" >"$tmp/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
    [[ -s "$tmp/serve/aviary.addr" ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
[[ -s "$tmp/serve/aviary.addr" ]] || {
    tail -20 "$tmp/serve.log" >&2
    die "serve did not start"
}
addr=$(head -1 "$tmp/serve/aviary.addr")
for _ in $(seq 1 100); do
    curl -fsS "http://$addr/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
printf '  serve at %s (pid %s)\n' "$addr" "$pid"

printf '\n== 1. leases alone, concurrency 32\n'
"$LEASE_LOAD" --addr "$addr" --concurrency 32 --duration "$DURATION" --warmup "$WARMUP" \
    --label alone | tee "$tmp/alone.txt"

printf '\n== 2. leases while logs pour in over /ws (4 connections, %s lines per upload)\n' "$BATCH"
"$SCALE" flood --addr "$addr" --seconds "$((DURATION + WARMUP + 1))" --batch "$BATCH" \
    >"$tmp/flood.txt" 2>&1 &
flood=$!
"$LEASE_LOAD" --addr "$addr" --concurrency 32 --duration "$DURATION" --warmup "$WARMUP" \
    --label beside-ingest | tee "$tmp/beside.txt"
wait "$flood" || true
cat "$tmp/flood.txt"

printf '\n== 3. preload: %s lines over the last 24 h\n' "$LINES"
"$SCALE" preload --addr "$addr" --lines "$LINES" --batch "$BATCH" | tee "$tmp/preload.txt"
printf '  logs.db: %s\n' "$(du -sh "$tmp/serve/logs.db" | cut -f1)"

printf '\n== 4. queries over a 1-hour window of %s lines\n' "$LINES"
"$SCALE" query --addr "$addr" --queries "$QUERIES" | tee "$tmp/query.txt"

printf '\n== 5. the live tail: upload to delivery\n'
"$SCALE" tail --addr "$addr" --lines "$TAIL_LINES" | tee "$tmp/tail.txt"

printf '\n== summary\n'
printf '| figure | value |\n|---|---|\n'
printf '| lease ops/s at c=32, alone | %s (p50 %s ms, p99 %s ms) |\n' \
    "$(field "$tmp/alone.txt" ops_per_s)" "$(field "$tmp/alone.txt" p50_ms)" \
    "$(field "$tmp/alone.txt" p99_ms)"
printf '| lease ops/s at c=32, beside ingest | %s (p50 %s ms, p99 %s ms) |\n' \
    "$(field "$tmp/beside.txt" ops_per_s)" "$(field "$tmp/beside.txt" p50_ms)" \
    "$(field "$tmp/beside.txt" p99_ms)"
printf '| ingest beside the leases | %s lines/s |\n' "$(field "$tmp/flood.txt" lines_per_s)"
printf '| preload | %s lines/s |\n' "$(field "$tmp/preload.txt" lines_per_s)"
grep '^RESULT mode=query' "$tmp/query.txt" | while read -r line; do
    shape=$(tr ' ' '\n' <<<"$line" | sed -n 's/^shape=//p')
    p50=$(tr ' ' '\n' <<<"$line" | sed -n 's/^p50_ms=//p')
    p99=$(tr ' ' '\n' <<<"$line" | sed -n 's/^p99_ms=//p')
    printf '| 1-hour window of %s lines, %s | p50 %s ms, p99 %s ms |\n' "$LINES" "$shape" "$p50" "$p99"
done
printf '| tail, upload to delivery | p50 %s ms, p99 %s ms |\n' "$(field "$tmp/tail.txt" p50_ms)" \
    "$(field "$tmp/tail.txt" p99_ms)"
