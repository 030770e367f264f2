#!/usr/bin/env bash
# bench/scaleout: several instances on one PostgreSQL against one, and PostgreSQL against SQLite
# (issue 13). Prints figures; it is never a timed test.
#
#   bench/scaleout/run.sh          (or `make bench`)
#
# 1. builds Release (aviary, lease_load, postgres_cluster) and starts a durable PostgreSQL
#    cluster (fsync and synchronous_commit on) on a free loopback port in a temp dir;
# 2. lease operations/s at concurrency 32 (acquire+release over JSON-RPC, bench/leases'
#    lease_load) against one serve on SQLite (synchronous=full), then one on PostgreSQL;
# 3. job throughput with jobs that each sleep 50 ms (8 workers per instance, non-exclusive,
#    32 nodes): one instance on SQLite, one on PostgreSQL, three on the same PostgreSQL;
# 4. enqueue-to-start p50 of a no-op job submitted to an instance whose one worker is busy and
#    run by another instance, against one submitted to and run by the same instance.
#
# Knobs (environment): BUILD=build  DURATION=10  JOBS=600  LATENCY_JOBS=100
# BENCH_TMP=<parent of the temp dir, default $BUILD: a real disk>  SKIP_BUILD=1  KEEP_TMP=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
DURATION=${DURATION:-10}
JOBS=${JOBS:-600}
LATENCY_JOBS=${LATENCY_JOBS:-100}
AVIARY=$BUILD/aviary
LEASE_LOAD=$BUILD/bench/leases/lease_load
CLUSTER=$BUILD/tests/postgres_cluster

if [[ -z "${SKIP_BUILD:-}" ]]; then
    generator=()
    [[ -f "$BUILD/CMakeCache.txt" ]] || generator=(-G Ninja)
    cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DAVIARY_BENCH=ON >/dev/null
    cmake --build "$BUILD" --target aviary lease_load postgres_cluster
fi

TMP=$(mktemp -d "${BENCH_TMP:-$ROOT/$BUILD}/bench-scaleout.XXXXXX")
chmod 755 "$TMP"  # the cluster runs as postgres when this runs as root
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    "$CLUSTER" stop "$TMP/pg" >/dev/null 2>&1 || true
    [[ -n "${KEEP_TMP:-}" ]] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

printf '== machine\n'
printf '  %s, %s cores, %s; temp dir on %s\n' "$(uname -sr)" "$(nproc)" \
    "$(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)" \
    "$(df -PT "$TMP" | awk 'NR==2 {print $2}')"
printf '  aviary at commit %s\n' "$(git rev-parse --short HEAD)"

"$CLUSTER" start "$TMP/pg" --durable >/dev/null
PG_URL=$(cat "$TMP/pg/url")
printf '  postgres: %s (fsync on, synchronous_commit on)\n' "$PG_URL"
schema_n=0

# config NAME STORE WORKERS: a config file for one instance; STORE is "sqlite" or "postgres".
config() {
    local name=$1 store=$2 workers=$3 file="$TMP/$1.yaml"
    {
        echo "instance: $name"
        echo "log: {level: warn}"
        echo "server: {blocking_threads: 64}"
        if [[ "$store" == postgres ]]; then
            echo "store: {url: '$PG_URL?options=-csearch_path%3D$SCHEMA'}"
        else
            echo "store: {synchronous: full}"
        fi
        echo "fleet:"
        echo "  nodes:"
        for i in $(seq 0 31); do echo "    - {name: node-$i, driver: sim}"; done
        echo "jobs:"
        echo "  workers: $workers"
        echo "  actions:"
        echo "    sleep50: {exclusive: false, params: {n: {type: string}}, steps: [{run: [sleep, '0.05']}]}"
        echo "    noop: {exclusive: false, params: {n: {type: string}}, steps: [{run: ['true']}]}"
        echo "    hold: {exclusive: false, steps: [{run: [sleep, '600']}]}"
    } >"$file"
    echo "$file"
}

# new_schema: a fresh schema for the next set of instances (each measurement starts empty).
new_schema() {
    schema_n=$((schema_n + 1))
    SCHEMA="bench_$schema_n"
    psql -q "$PG_URL" -c "CREATE SCHEMA $SCHEMA" >/dev/null
}

# start NAME STORE WORKERS: starts serve, waits for its address, sets ADDR.
start() {
    local dir="$TMP/data-$1-$RANDOM"
    mkdir -p "$dir"
    "$AVIARY" serve --config "$(config "$1" "$2" "$3")" --listen 127.0.0.1:0 --data-dir "$dir" \
        >"$dir/log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 200); do
        ADDR=$(grep -so 'serving on http://[0-9.:]*' "$dir/log" | sed 's|serving on http://||' || true)
        [[ -n "$ADDR" ]] && return 0
        sleep 0.05
    done
    cat "$dir/log" >&2
    echo "bench/scaleout: serve did not start" >&2
    exit 1
}

stop_all() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

lease_rate() {
    "$LEASE_LOAD" --addr "$1" --concurrency 32 --duration "$DURATION" --warmup 2 --label "$2" |
        grep RESULT | tail -1
}

printf '\n== lease operations, concurrency 32 (acquire + release, JSON-RPC)\n'
start lease-sqlite sqlite 2
lease_rate "$ADDR" sqlite
stop_all
new_schema
start lease-pg postgres 2
lease_rate "$ADDR" postgres
stop_all

printf '\n== job throughput: %d jobs of 50 ms, 8 workers per instance\n' "$JOBS"
start jobs-sqlite sqlite 8
printf 'sqlite, 1 instance:     '
bench/scaleout/scaleout.py throughput --submit "$ADDR" --jobs "$JOBS"
stop_all
new_schema
start jobs-pg-1 postgres 8
printf 'postgres, 1 instance:   '
bench/scaleout/scaleout.py throughput --submit "$ADDR" --jobs "$JOBS"
stop_all
new_schema
addrs=()
for name in jobs-pg-a jobs-pg-b jobs-pg-c; do
    start "$name" postgres 8
    addrs+=("$ADDR")
done
printf 'postgres, 3 instances:  '
bench/scaleout/scaleout.py throughput --submit "$(IFS=,; echo "${addrs[*]}")" --jobs "$JOBS"
stop_all

printf '\n== enqueue-to-start of a no-op job (%d, one at a time)\n' "$LATENCY_JOBS"
new_schema
start latency-a postgres 1
a=$ADDR
curl -sf -XPOST -H 'Content-Type: application/json' "http://$a/api/v1/nodes/node-0/actions/hold" \
    -d '{}' >/dev/null
sleep 1  # A's one worker takes the hold job before B exists
start latency-b postgres 4
b=$ADDR
printf 'within one instance (submitted to B, run on B): '
bench/scaleout/scaleout.py latency --submit "$b" --read "$b" --jobs "$LATENCY_JOBS"
printf 'across instances (submitted to A, run on B):    '
bench/scaleout/scaleout.py latency --submit "$a" --read "$b" --jobs "$LATENCY_JOBS"
stop_all
