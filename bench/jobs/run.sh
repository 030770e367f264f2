#!/usr/bin/env bash
# bench/jobs: the job engine's figures (issue 5). Prints figures; it is never a timed test.
#
#   bench/jobs/run.sh          (or `make bench`)
#
# Builds Release (aviary, job_bench), then job_bench drives the real binary over HTTP with
# SQLite on a real disk (synchronous=full, every job durable): no-op jobs one at a time and in
# a burst (enqueue-to-start p50/p99, throughput with 2 workers), cancel-to-gone of a running
# step (cooperative and one that ignores SIGTERM), and rescue after kill -9 of serve; then the
# peer, Celery 5 with a Redis broker (prefork 2, results ignored), on the same no-op.
#
# Knobs (environment): BUILD=build  SINGLE=200  BURST=1000  CLIENTS=32  CANCELS=10  RESCUES=5
# BENCH_TMP=<parent of the temp dir, default $BUILD: must be a real disk, not tmpfs>
# SKIP_DEPS=1  SKIP_BUILD=1  KEEP_TMP=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}

if [[ -z "${SKIP_DEPS:-}" ]]; then
    scripts/install-deps.sh --bench
fi
if [[ -z "${SKIP_BUILD:-}" ]]; then
    generator=()
    [[ -f "$BUILD/CMakeCache.txt" ]] || generator=(-G Ninja)
    cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DAVIARY_BENCH=ON >/dev/null
    cmake --build "$BUILD" --target aviary job_bench
fi

tmp=$(mktemp -d "${BENCH_TMP:-$ROOT/$BUILD}/bench-jobs.XXXXXX")
cleanup() {
    [[ -n "${KEEP_TMP:-}" ]] || rm -rf "$tmp"
}
trap cleanup EXIT

printf '== machine\n'
printf '  %s, %s cores, %s\n' "$(uname -sr)" "$(nproc)" \
    "$(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)"
printf '  disk under %s: %s\n' "$tmp" "$(df -hT "$tmp" | awk 'NR==2 {print $2}')"
printf '  aviary %s\n' "$("$BUILD/aviary" version 2>/dev/null || echo "?")"

"$BUILD/bench/jobs/job_bench" --dir "$tmp" \
    --single "${SINGLE:-200}" --burst "${BURST:-1000}" --clients "${CLIENTS:-32}" \
    --cancels "${CANCELS:-10}" --rescues "${RESCUES:-5}"

# The peer in the same run: Celery 5 + Redis doing the same no-op (scripts/install-deps.sh
# --bench installs python3-celery, python3-redis and redis-server). Debian's python3, not a
# pyenv shim: the packages live there.
if /usr/bin/python3 -c 'import celery, redis' 2>/dev/null && command -v redis-server >/dev/null; then
    /usr/bin/python3 bench/jobs/celery_bench.py --dir "$tmp/celery" \
        --single "${SINGLE:-200}" --burst "${BURST:-1000}" --clients "${CLIENTS:-32}"
else
    printf '\n(celery peer skipped: run scripts/install-deps.sh --bench)\n'
fi
