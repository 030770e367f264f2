#!/usr/bin/env bash
# bench/leases: the lease benchmark (issue 4). Prints figures; it is never a timed test.
#
#   bench/leases/run.sh          (or `make bench`)
#
# 1. installs the benchmark peers (scripts/install-deps.sh --bench: wrk, nginx) and builds
#    Release: aviary, lease_load, sqlite_rate;
# 2. for each server.io_threads in $IO_THREADS: starts `aviary serve` on a generated config (32 sim
#    nodes node-0..node-31, SQLite with synchronous=full in a temp data dir) on 127.0.0.1:0, runs
#    acquire+release cycles over the tweety JSON-RPC at concurrency 1 and 32 (lease_load), then
#    `wrk` on GET /healthz; and nginx (worker_processes = io_threads, access_log off) serving a
#    2-byte static file with the same wrk flags;
# 3. the raw SQLite rate for the same writes on the same disk (sqlite_rate): one transaction per
#    operation on 1 thread and on 32 threads (own connections, busy_timeout), and one thread
#    committing 32 operations per transaction (what group commit can reach);
# 4. a diagnostic row: io_threads=2, concurrency 32 with glibc heap trimming off (see RESULTS.md);
# 5. issue 13's ratio: RATIO_ROUNDS pairs of (aviary at concurrency 32, then raw SQLite at 32
#    operations per commit), each pair back to back, and the median of their ratios;
# 6. prints the machine's facts and a results table with the goals, and stops all it started.
#
# Knobs (environment): BUILD=build  AVIARY=<binary, default $BUILD/aviary; set it to skip
# building aviary>  DURATION=10  WARMUP=2  IO_THREADS="2 1"  WRK_FLAGS="-t2 -c64 -d10s"
# BENCH_TMP=<parent of the temp dir, default $BUILD: must be a real disk, not tmpfs>
# SKIP_DEPS=1  SKIP_BUILD=1  SKIP_DIAG=1  KEEP_TMP=1  LOG_LEVEL=info (aviary's log.level)
# POOL_SIZES="64 16 4" (server.blocking_threads for the pool-size rows; empty skips them)
# ONLY_POOL=1 (only the pool-size rows: no io_threads rows, nginx or raw SQLite)
# RATIO_ROUNDS=3 (issue 13's ratio: lease ops/s at c=32 against raw SQLite at 32 operations per
# commit, measured in alternated pairs, each pair back to back on the same disk, and the median
# pair taken; 0 skips it)  RATIO_IO=1 (server.io_threads for the ratio pairs: 1, the default;
# on 2 cores a second I/O thread competes with the store writer and the load generator for CPU)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
IO_THREADS=${IO_THREADS:-"2 1"}
WRK_FLAGS=${WRK_FLAGS:-"-t2 -c64 -d10s"}
LOG_LEVEL=${LOG_LEVEL:-info}
POOL_SIZES=${POOL_SIZES-"64 16 4"}
NODES=32
GOAL_OPS=15000
GOAL_P99_MS=10
GOAL_HEALTHZ_RATIO=0.80
GOAL_SQLITE_RATIO=0.60
RATIO_ROUNDS=${RATIO_ROUNDS:-3}

say() { printf '\n== %s\n' "$*"; }
die() {
    printf 'bench/leases: %s\n' "$*" >&2
    exit 1
}
# shellcheck source=bench/common/lib.sh
source bench/common/lib.sh

# --- dependencies and build ------------------------------------------------------------------
if [[ -z "${SKIP_DEPS:-}" ]]; then
    scripts/install-deps.sh --bench
fi
command -v wrk >/dev/null || die "wrk is missing (scripts/install-deps.sh --bench)"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x "$NGINX" ]] || die "nginx is missing (scripts/install-deps.sh --bench)"

targets=(lease_load sqlite_rate)
if [[ -z "${AVIARY:-}" ]]; then
    targets=(aviary "${targets[@]}")
fi
if [[ -z "${SKIP_BUILD:-}" ]]; then
    generator=()
    [[ -f "$BUILD/CMakeCache.txt" ]] || generator=(-G Ninja)
    cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DAVIARY_BENCH=ON >/dev/null
    cmake --build "$BUILD" --target "${targets[@]}"
fi
AVIARY=${AVIARY:-$BUILD/aviary}
LEASE_LOAD=$BUILD/bench/leases/lease_load
SQLITE_RATE=$BUILD/bench/leases/sqlite_rate
for bin in "$AVIARY" "$LEASE_LOAD" "$SQLITE_RATE"; do
    [[ -x "$bin" ]] || die "$bin was not built (is libbenchmark-dev installed? bench/ needs it)"
done
AVIARY=$(realpath "$AVIARY")
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)

# --- temp dir, and stopping everything we start ------------------------------------------------
BENCH_TMP=${BENCH_TMP:-$BUILD}
mkdir -p "$BENCH_TMP"
TMP=$(mktemp -d "$(realpath "$BENCH_TMP")/bench-leases.XXXXXX")
# nginx's workers drop to `nobody` when started as root: they must reach the static file.
chmod 755 "$TMP"
started=()
cleanup() {
    local pid
    for pid in "${started[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    if [[ -n "${KEEP_TMP:-}" ]]; then
        echo "bench/leases: kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# --- the machine -------------------------------------------------------------------------------
fs_type=$(df -PT "$TMP" | awk 'NR==2 {print $2}')
fs_dev=$(df -PT "$TMP" | awk 'NR==2 {print $1}')
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
say "machine"
echo "date:        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "nproc:       $(nproc)"
echo "cpu:         ${cpu_model:-unknown}"
echo "ram:         $mem"
echo "kernel:      $(uname -srm)"
echo "temp dir:    $TMP ($fs_type on $fs_dev)"
echo "load avg:    $(cut -d' ' -f1-3 /proc/loadavg) (before the run; other work on the machine skews figures)"
aviary_rev=$(git -C "$(dirname "$AVIARY")" rev-parse --short HEAD 2>/dev/null || echo '?')
aviary_dirty=$(git -C "$(dirname "$AVIARY")" status --porcelain -- src 2>/dev/null | wc -l)
echo "aviary:      $AVIARY (source at commit $aviary_rev, $aviary_dirty changed files under src/)"
echo "bench tools: $BUILD (build type ${build_type:-?})"
echo "sqlite:      $(sqlite3 --version 2>/dev/null | cut -d' ' -f1 || echo '?')"
echo "nginx:       $("$NGINX" -v 2>&1 | sed 's/.*version: //')"
echo "wrk:         $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2) flags: $WRK_FLAGS --latency"
if [[ "$fs_type" == tmpfs || "$fs_type" == ramfs ]]; then
    echo "!!! $TMP is on $fs_type: fsync is free there and the durable figures mean nothing."
    echo "!!! Set BENCH_TMP to a directory on a real disk."
fi

# CPU accounting: ticks used by a process, and busy/total jiffies of the whole machine.
CLK_TCK=$(getconf CLK_TCK)
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
machine_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }

# RESULT lines are "RESULT k=v k=v": field NAME from the last RESULT line of a log.
field() { grep '^RESULT ' "$1" | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }
metric() { awk -v m="$2" '$1 == m {printf "%d", $2}' "$1"; }

# Ticks used by a process and its direct children (nginx's workers).
tree_ticks() {
    local total child
    total=$(proc_ticks "$1")
    for child in $(pgrep -P "$1" || true); do
        total=$((total + $(proc_ticks "$child")))
    done
    echo "$total"
}

# wrk: requests/s and latency percentiles; non-2xx and socket errors are printed loudly.
# run_wrk URL OUT SERVER_PID: also sets $wrk_cpu, the server's cores busy during the run, and
# $wrk_us, its CPU microseconds per request.
run_wrk() {
    local url=$1 out=$2 server=$3 t0 t1 w0 w1 rps
    t0=$(tree_ticks "$server")
    w0=$(date +%s.%N)
    # shellcheck disable=SC2086
    wrk $WRK_FLAGS --latency "$url" >"$out" 2>&1 || true
    w1=$(date +%s.%N)
    t1=$(tree_ticks "$server")
    rps=$(wrk_rps "$out")
    wrk_cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v a="$w0" -v b="$w1" \
        'BEGIN {printf "%.2f", t / hz / (b - a)}')
    wrk_us=$(awk -v c="$wrk_cpu" -v r="${rps:-0}" 'BEGIN {printf "%.1f", r ? c / r * 1e6 : 0}')
    cat "$out"
    echo "server CPU during the run: $wrk_cpu cores, $wrk_us us per request"
    if grep -qE 'Non-2xx|Socket errors' "$out"; then
        echo "!!! wrk saw errors against $url: $(grep -E 'Non-2xx|Socket errors' "$out" | tr '\n' ' ')"
    fi
}
wrk_rps() { awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$1"; }
wrk_pct() { awk -v p="$2" '$1 == p {print $2}' "$1"; }

wait_http() {
    local url=$1
    for _ in $(seq 1 200); do
        if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}


declare -A R  # results, keyed "what/io"

# --- aviary ------------------------------------------------------------------------------------
write_config() {
    local io=$1 data=$2 file=$3 pool=${BLOCKING_THREADS:-64}
    {
        echo "data_dir: $data"
        echo "log:"
        echo "  level: $LOG_LEVEL"
        echo "server:"
        echo "  listen: 127.0.0.1:0"
        echo "  io_threads: $io"
        echo "  blocking_threads: $pool"
        echo "store:"
        echo "  synchronous: full"
        echo "fleet:"
        echo "  nodes:"
        for i in $(seq 0 $((NODES - 1))); do
            echo "    - {name: node-$i, driver: sim, image_tag: v1.0.0, labels: {bench: leases}}"
        done
    } >"$file"
}

# start_aviary NAME IO [ENV...]: starts serve on a fresh data dir; sets $pid and $addr.
start_aviary() {
    local name=$1 io=$2
    shift 2
    local data=$TMP/$name
    mkdir -p "$data"
    write_config "$io" "$data" "$TMP/$name.yaml"
    env "$@" "$AVIARY" serve --config "$TMP/$name.yaml" --listen 127.0.0.1:0 --data-dir "$data" \
        >"$TMP/$name.out" 2>"$TMP/$name.log" &
    pid=$!
    started+=("$pid")
    for _ in $(seq 1 200); do
        [[ -s "$data/aviary.addr" ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [[ -s "$data/aviary.addr" ]] || {
        tail -20 "$TMP/$name.log" >&2
        die "aviary did not publish $data/aviary.addr"
    }
    addr=$(head -1 "$data/aviary.addr")
    wait_http "http://$addr/healthz" || die "aviary at $addr does not answer /healthz"
    echo "listening on $addr (pid $pid), store in $data"
}

# lease_run KEY CONCURRENCY: lease_load against $addr/$pid; figures into R[*/KEY].
lease_run() {
    local key=$1 c=$2 a0 a1 m_busy0 m_all0 m_busy1 m_all1 commits writes secs
    local fkey=${key//\//-}
    local f=$TMP/lease-$fkey.txt
    curl -fsS "http://$addr/metrics" >"$TMP/metrics-before-$fkey.txt"
    a0=$(proc_ticks "$pid")
    read -r m_busy0 m_all0 < <(machine_ticks)
    "$LEASE_LOAD" --addr "$addr" --concurrency "$c" --duration "$DURATION" --warmup "$WARMUP" \
        --label "aviary-$fkey" | tee "$f" || true
    a1=$(proc_ticks "$pid")
    read -r m_busy1 m_all1 < <(machine_ticks)
    curl -fsS "http://$addr/metrics" >"$TMP/metrics-after-$fkey.txt"
    R[ops/$key]=$(field "$f" ops_per_s)
    R[p50/$key]=$(field "$f" p50_ms)
    R[p99/$key]=$(field "$f" p99_ms)
    R[err/$key]=$(field "$f" errors)
    commits=$(($(metric "$TMP/metrics-after-$fkey.txt" aviary_store_commits_total) - \
        $(metric "$TMP/metrics-before-$fkey.txt" aviary_store_commits_total)))
    writes=$(($(metric "$TMP/metrics-after-$fkey.txt" aviary_store_writes_total) - \
        $(metric "$TMP/metrics-before-$fkey.txt" aviary_store_writes_total)))
    R[batch/$key]=$(awk -v w="$writes" -v c="$commits" 'BEGIN {printf "%.1f", c ? w / c : 0}')
    # CPU over the whole lease_load run (warm-up included), in cores.
    secs=$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN {print d + w}')
    R[cpu/$key]=$(awk -v t=$((a1 - a0)) -v hz="$CLK_TCK" -v s="$secs" \
        'BEGIN {printf "%.2f", t / hz / s}')
    R[mcpu/$key]=$(awk -v b=$((m_busy1 - m_busy0)) -v a=$((m_all1 - m_all0)) -v n="$(nproc)" \
        'BEGIN {printf "%.2f", a ? b / a * n : 0}')
    echo "store: $writes writes in $commits commits (${R[batch/$key]} per commit);" \
        "aviary used ${R[cpu/$key]} cores, the whole machine ${R[mcpu/$key]} of $(nproc)"
}

if [[ -n "${ONLY_POOL:-}" ]]; then
    IO_THREADS=""
    SKIP_DIAG=1
fi
for io in $IO_THREADS; do
    say "aviary serve, server.io_threads=$io, store synchronous=full"
    start_aviary "aviary-io$io" "$io"
    for c in 1 32; do
        lease_run "c$c/$io" "$c"
    done
    say "wrk GET /healthz against aviary (io_threads=$io)"
    run_wrk "http://$addr/healthz" "$TMP/wrk-aviary-io$io.txt" "$pid"
    R[hz_aviary_us/$io]=$wrk_us
    R[hz_aviary/$io]=$(wrk_rps "$TMP/wrk-aviary-io$io.txt")
    R[hz_aviary_p99/$io]=$(wrk_pct "$TMP/wrk-aviary-io$io.txt" 99%)
    stop_pid "$pid"
done

# Diagnostic, not a goal figure: the same binary with glibc's heap trimming off. The store's
# writer thread frees SQLite's savepoint memory after every operation and glibc returns it with
# madvise(MADV_DONTNEED) (a TLB shoot-down IPI), then faults it back in: see bench/RESULTS.md.
DIAG_IO=$(echo "$IO_THREADS" | awk '{print $1}')
if [[ -z "${SKIP_DIAG:-}" ]]; then
    say "diagnostic: io_threads=$DIAG_IO, concurrency 32, GLIBC_TUNABLES=glibc.malloc.trim_threshold=64MiB"
    start_aviary "aviary-notrim" "$DIAG_IO" GLIBC_TUNABLES=glibc.malloc.trim_threshold=67108864
    lease_run "notrim" 32
    stop_pid "$pid"
fi

# The blocking pool's size: store calls wait there on group commit, so it is sized for waiting,
# not for cores. Each size at concurrency 32 (more clients than the smaller pools have
# threads), io_threads = the first of IO_THREADS (2 by default).
POOL_IO=$(echo "${IO_THREADS:-2}" | awk '{print $1}')
for b in $POOL_SIZES; do
    say "blocking_threads=$b, io_threads=$POOL_IO, concurrency 32"
    BLOCKING_THREADS=$b start_aviary "aviary-pool$b" "$POOL_IO"
    lease_run "pool$b" 32
    stop_pid "$pid"
done

# --- nginx -------------------------------------------------------------------------------------
mkdir -p "$TMP/www" "$TMP/nginx-temp"
chmod 755 "$TMP/www"
printf 'ok' >"$TMP/www/healthz"  # aviary's /healthz body is the same 2 bytes
chmod 644 "$TMP/www/healthz"
for io in $IO_THREADS; do
    port=$(free_port)
    conf=$TMP/nginx-io$io.conf
    cat >"$conf" <<EOF
worker_processes $io;
daemon off;
pid $TMP/nginx-io$io.pid;
error_log $TMP/nginx-io$io-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    # Like aviary, never close a busy keep-alive connection (nginx's default closes after 1000).
    keepalive_requests 1000000;
    client_body_temp_path $TMP/nginx-temp/body;
    proxy_temp_path $TMP/nginx-temp/proxy;
    fastcgi_temp_path $TMP/nginx-temp/fastcgi;
    uwsgi_temp_path $TMP/nginx-temp/uwsgi;
    scgi_temp_path $TMP/nginx-temp/scgi;
    server {
        listen 127.0.0.1:$port;
        root $TMP/www;
        location = /healthz { default_type text/plain; }
    }
}
EOF
    say "nginx, worker_processes=$io, on 127.0.0.1:$port"
    "$NGINX" -p "$TMP" -c "$conf" 2>"$TMP/nginx-io$io.stderr" &
    pid=$!
    started+=("$pid")
    if ! wait_http "http://127.0.0.1:$port/healthz"; then
        cat "$TMP/nginx-io$io.stderr" "$TMP/nginx-io$io-error.log" >&2
        die "nginx does not serve /healthz on $port"
    fi
    run_wrk "http://127.0.0.1:$port/healthz" "$TMP/wrk-nginx-io$io.txt" "$pid"
    R[hz_nginx_us/$io]=$wrk_us
    R[hz_nginx/$io]=$(wrk_rps "$TMP/wrk-nginx-io$io.txt")
    R[hz_nginx_p99/$io]=$(wrk_pct "$TMP/wrk-nginx-io$io.txt" 99%)
    stop_pid "$pid"
done

# --- raw SQLite --------------------------------------------------------------------------------
mkdir -p "$TMP/sqlite"
SQLITE_SPECS=("1 1" "32 1" "1 32")
[[ -n "${ONLY_POOL:-}" ]] && SQLITE_SPECS=()
say "raw SQLite on the same disk: WAL, synchronous=FULL, one transaction per commit"
for spec in "${SQLITE_SPECS[@]}"; do
    read -r threads batch <<<"$spec"
    rm -f "$TMP/sqlite/rate.db"*
    "$SQLITE_RATE" --db "$TMP/sqlite/rate.db" --threads "$threads" --batch "$batch" \
        --duration "$DURATION" --warmup "$WARMUP" --label "sqlite-t$threads-b$batch" |
        tee "$TMP/sqlite-t$threads-b$batch.txt" || true
    f=$TMP/sqlite-t$threads-b$batch.txt
    R[sq_ops/$threads/$batch]=$(field "$f" ops_per_s)
    R[sq_commits/$threads/$batch]=$(field "$f" commits_per_s)
    R[sq_p50/$threads/$batch]=$(field "$f" p50_ms)
    R[sq_p99/$threads/$batch]=$(field "$f" p99_ms)
    R[sq_fair/$threads/$batch]="$(field "$f" thread_min_ops)..$(field "$f" thread_max_ops)"
done

# --- issue 13's ratio: alternated pairs --------------------------------------------------------
# The disk's fsync rate drifts by several per cent between runs minutes apart, and both sides of
# the ratio are bound by it: each pair runs the server and raw SQLite back to back, and the
# median of the pairs' ratios is the figure.
[[ -n "${ONLY_POOL:-}" ]] && RATIO_ROUNDS=0
RATIO_IO=${RATIO_IO:-1}
ratios=()
for ((round = 1; round <= RATIO_ROUNDS; round++)); do
    say "ratio pair $round of $RATIO_ROUNDS: aviary c=32 (io_threads=$RATIO_IO), then raw SQLite at 32 per commit"
    start_aviary "aviary-ratio$round" "$RATIO_IO"
    lease_run "ratio$round" 32
    stop_pid "$pid"
    rm -f "$TMP/sqlite/rate.db"*
    "$SQLITE_RATE" --db "$TMP/sqlite/rate.db" --threads 1 --batch 32 \
        --duration "$DURATION" --warmup "$WARMUP" --label "sqlite-ratio$round" |
        tee "$TMP/sqlite-ratio$round.txt" || true
    R[sq_ops/ratio$round]=$(field "$TMP/sqlite-ratio$round.txt" ops_per_s)
    R[ratio_pair/$round]=$(awk -v a="${R[ops/ratio$round]:-0}" -v q="${R[sq_ops/ratio$round]:-0}" \
        'BEGIN {printf "%.3f", q ? a / q : 0}')
    ratios+=("${R[ratio_pair/$round]}")
done
if ((${#ratios[@]} > 0)); then
    R[ratio_median]=$(printf '%s\n' "${ratios[@]}" | sort -n |
        awk '{v[NR] = $1} END {printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
fi

# --- the table ---------------------------------------------------------------------------------
say "results ($(nproc) cores, $fs_type; load average now $(cut -d' ' -f1-3 /proc/loadavg))"
row() {
    printf '%-44s %10s %9s %9s %7s %9s %7s %8s\n' "$1" "${R[ops/$2]:-?}" "${R[p50/$2]:-?}" \
        "${R[p99/$2]:-?}" "${R[err/$2]:-?}" "${R[batch/$2]:-?}" "${R[cpu/$2]:-?}" "${R[mcpu/$2]:-?}"
}
printf '%-44s %10s %9s %9s %7s %9s %7s %8s\n' "lease ops (acquire and release each count 1)" \
    "ops/s" "p50 ms" "p99 ms" "errors" "writes/c" "aviary" "machine"
for io in $IO_THREADS; do
    for c in 1 32; do
        row "aviary io_threads=$io, concurrency $c" "c$c/$io"
    done
done
if [[ -z "${SKIP_DIAG:-}" ]]; then
    row "(diagnostic) io=$DIAG_IO, c 32, malloc trim off" notrim
fi
for b in $POOL_SIZES; do
    row "blocking_threads=$b, io=$POOL_IO, concurrency 32" "pool$b"
done
echo "(writes/c: store writes per commit, the group-commit batch; aviary, machine: cores busy)"
printf '%-44s %10s %9s %9s %16s\n' "raw SQLite, synchronous=FULL" "ops/s" "p50 ms" "p99 ms" \
    "ops per thread"
for spec in "${SQLITE_SPECS[@]}"; do
    read -r threads batch <<<"$spec"
    printf '%-44s %10s %9s %9s %16s\n' "$threads thread(s), $batch op(s) per commit" \
        "${R[sq_ops/$threads/$batch]:-?}" "${R[sq_p50/$threads/$batch]:-?}" \
        "${R[sq_p99/$threads/$batch]:-?}" "${R[sq_fair/$threads/$batch]:-?}"
done
printf '%-36s %10s %10s %6s %11s %10s %10s %9s\n' "GET /healthz, wrk $WRK_FLAGS" "aviary r/s" \
    "nginx r/s" "ratio" "aviary p99" "nginx p99" "aviary us" "nginx us"
for io in $IO_THREADS; do
    ratio=$(awk -v a="${R[hz_aviary/$io]:-0}" -v n="${R[hz_nginx/$io]:-0}" \
        'BEGIN {printf "%.2f", n ? a / n : 0}')
    R[ratio/$io]=$ratio
    printf '%-36s %10s %10s %6s %11s %10s %10s %9s\n' "io_threads = nginx workers = $io" \
        "${R[hz_aviary/$io]:-?}" "${R[hz_nginx/$io]:-?}" "$ratio" \
        "${R[hz_aviary_p99/$io]:-?}" "${R[hz_nginx_p99/$io]:-?}" \
        "${R[hz_aviary_us/$io]:-?}" "${R[hz_nginx_us/$io]:-?}"
done
echo "(us: the server's CPU microseconds per request, all its threads or workers)"
if ((${#ratios[@]} > 0)); then
    printf '%-44s %10s %12s %8s %9s %7s\n' "issue 13's ratio, pairs back to back" "aviary c32" \
        "raw b32" "ratio" "writes/c" "aviary"
    for ((round = 1; round <= RATIO_ROUNDS; round++)); do
        printf '%-44s %10s %12s %8s %9s %7s\n' "pair $round (io_threads=$RATIO_IO)" \
            "${R[ops/ratio$round]:-?}" "${R[sq_ops/ratio$round]:-?}" "${R[ratio_pair/$round]:-?}" \
            "${R[batch/ratio$round]:-?}" "${R[cpu/ratio$round]:-?}"
    done
fi

say "goals (2-core machine)"
goal_io=$(echo "$IO_THREADS" | awk '{print $1}')
verdict() { if awk "BEGIN {exit !($1)}"; then echo "MET"; else echo "NOT MET"; fi; }
ops=${R[ops/c32/$goal_io]:-0}
p99=${R[p99/c32/$goal_io]:-999}
errs=${R[err/c32/$goal_io]:-1}
echo "lease ops/s at concurrency 32 >= $GOAL_OPS (io_threads=$goal_io, synchronous=full): $ops ->" \
    "$(verdict "$ops >= $GOAL_OPS && $errs == 0")"
echo "lease p99 at concurrency 32 < $GOAL_P99_MS ms: $p99 ms -> $(verdict "$p99 < $GOAL_P99_MS")"
echo "GET /healthz >= $GOAL_HEALTHZ_RATIO x nginx (io_threads=$goal_io): ${R[ratio/$goal_io]:-?} ->" \
    "$(verdict "${R[ratio/$goal_io]:-0} >= $GOAL_HEALTHZ_RATIO")"
if [[ -n "${R[ratio_median]:-}" ]]; then
    echo "lease ops/s at concurrency 32 >= $GOAL_SQLITE_RATIO x raw SQLite at 32 per commit" \
        "(io_threads=$RATIO_IO; median of $RATIO_ROUNDS pairs: ${ratios[*]}): ${R[ratio_median]} ->" \
        "$(verdict "${R[ratio_median]} >= $GOAL_SQLITE_RATIO")"
fi
total_errors=0
for io in $IO_THREADS; do
    for c in 1 32; do
        total_errors=$((total_errors + ${R[err/c$c/$io]:-1}))
    done
done
if [[ $total_errors -ne 0 ]]; then
    echo "!!! $total_errors lease operations were not JSON-RPC results: see the lines marked !!! above"
fi
echo "(all programs shared the same $(nproc) cores: load generator, server and wrk compete for CPU)"
