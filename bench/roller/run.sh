#!/usr/bin/env bash
# bench/roller: the roller endpoint's figures (issue 12). Prints figures; it is never a timed test.
#
#   bench/roller/run.sh          (or `make bench`)
#
# Builds Release (aviary, roller_bench), then roller_bench drives the real binary over HTTP with
# SQLite's default settings (synchronous=full) on a real disk: POST /api/v1/jobs for a no-op
# task from 32 clients (accepted/s, p50/p99) beside the same load on the REST action route,
# alternating, and POST-to-COMPLETE for one task at a time with the queue empty.
#
# Knobs (environment): BUILD=build  REQUESTS=2000  CLIENTS=32  ROUNDS=2  SINGLES=50
# WORKER_IDS=32 (more than CLIENTS: fewer duplicate submissions)  POLL_MS=5
# BENCH_TMP=<parent of the temp dir, default $BUILD: must be a real disk, not tmpfs>
# SKIP_BUILD=1  KEEP_TMP=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}

if [[ -z "${SKIP_BUILD:-}" ]]; then
    generator=()
    [[ -f "$BUILD/CMakeCache.txt" ]] || generator=(-G Ninja)
    cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DAVIARY_BENCH=ON >/dev/null
    cmake --build "$BUILD" --target aviary roller_bench
fi
bench="$BUILD/bench/roller/roller_bench"
if [[ ! -x "$bench" ]]; then
    printf 'bench/roller: %s was not built (is libbenchmark-dev installed? bench/ needs it)\n' \
        "$bench" >&2
    exit 1
fi

BENCH_TMP=${BENCH_TMP:-$BUILD}
mkdir -p "$BENCH_TMP"
tmp=$(mktemp -d "$(realpath "$BENCH_TMP")/bench-roller.XXXXXX")
cleanup() {
    [[ -n "${KEEP_TMP:-}" ]] || rm -rf "$tmp"
}
trap cleanup EXIT

printf '== machine\n'
printf '  %s, %s cores, %s\n' "$(uname -sr)" "$(nproc)" \
    "$(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)"
printf '  disk under %s: %s\n' "$tmp" "$(df -hT "$tmp" | awk 'NR==2 {print $2}')"
printf '  aviary %s\n' "$("$BUILD/aviary" version 2>/dev/null || echo "?")"

"$bench" --dir "$tmp" \
    --requests "${REQUESTS:-2000}" --clients "${CLIENTS:-32}" --rounds "${ROUNDS:-2}" \
    --singles "${SINGLES:-50}" --worker-ids "${WORKER_IDS:-32}" --poll-ms "${POLL_MS:-5}"
