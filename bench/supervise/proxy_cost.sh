#!/usr/bin/env bash
# bench/supervise/proxy_cost.sh: the sidecar proxy's instructions per request, counted by
# callgrind. The c=1 throughput of bench/supervise/run.sh moves by 10 % between runs on a shared
# 2-core VM; an instruction count moves by well under 1 %, so it shows what a change to the
# proxy path saves (and where the rest goes) before a long alternated wrk run confirms it.
#
# It runs proxy_alone (net::ReverseProxy behind net::HttpServer, as in aviary supervise but
# without the gate: callgrind cannot follow the sidecar's clone of its node) under callgrind,
# in front of nginx serving a 2-byte file, warms it up, and counts REQUESTS_SECONDS of wrk at
# c=1; then the same for nginx's proxy_pass (with upstream keep-alive, as run.sh configures it),
# so that the two are side by side in one run. Prints the instructions per request of each,
# their system calls per request (perf, on the two run natively), and the functions of
# aviary's path that cost the most.
#   bench/supervise/proxy_cost.sh                  (BUILD=build; SKIP_BUILD=1 to reuse it)
#   TOP=40 bench/supervise/proxy_cost.sh           more functions
#   KEEP=/tmp/cg.out bench/supervise/proxy_cost.sh  keep the dump (callgrind_annotate --tree=caller)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
REQUESTS_SECONDS=${REQUESTS_SECONDS:-5}
TOP=${TOP:-25}

die() {
    printf 'bench/supervise/proxy_cost: %s\n' "$*" >&2
    exit 1
}
# shellcheck source=bench/common/lib.sh
source bench/common/lib.sh
for tool in valgrind callgrind_annotate callgrind_control perf wrk curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh --bench)"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x "$NGINX" ]] || die "nginx is missing (scripts/install-deps.sh --bench)"
if [[ -z "${SKIP_BUILD:-}" ]]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAVIARY_BENCH=ON >/dev/null
    cmake --build "$BUILD" --target proxy_alone
fi
PROXY=$(realpath "$BUILD/bench/supervise/proxy_alone")
[[ -x "$PROXY" ]] || die "build proxy_alone first (cmake -DAVIARY_BENCH=ON)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/proxy-cost.XXXXXX")
started=()
cleanup() {
    local pid
    for pid in "${started[@]}"; do
        stop_pid "$pid"
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nginx_www "$TMP"
upstream=$(free_port)
nginx_conf "$TMP" upstream "$upstream" "root $TMP/www; location = /ok { default_type text/plain; }"
"$NGINX" -p "$TMP" -c "$TMP/upstream.conf" 2>"$TMP/upstream.stderr" &
started+=("$!")

# count NAME PORT VG OUT: warm NAME up, then REQUESTS_SECONDS of wrk at c=1 counted by the
# callgrind in process VG; sets REQUESTS and TOTAL (instructions), and DUMP (the dump's path).
count() {
    local name=$1 port=$2 vg=$3 out=$4 up=""
    for _ in $(seq 1 200); do  # valgrind starts slowly: up to 20 s
        if curl -fsS "http://127.0.0.1:$port/ok" >/dev/null 2>&1; then
            up=yes
            break
        fi
        sleep 0.1
    done
    [[ -n "$up" ]] || die "$name does not answer under callgrind"
    wrk -t1 -c1 -d2s "http://127.0.0.1:$port/ok" >/dev/null  # warm-up, not counted
    callgrind_control -i on "$vg" >/dev/null 2>&1
    REQUESTS=$(wrk -t1 -c1 -d"${REQUESTS_SECONDS}s" "http://127.0.0.1:$port/ok" |
        awk '/requests in/ {print $1}')
    callgrind_control -i off "$vg" >/dev/null 2>&1
    callgrind_control -d "$vg" >/dev/null 2>&1
    for _ in $(seq 1 50); do  # the dump is written by the process: until it is there
        compgen -G "$out.*" >/dev/null && break
        sleep 0.1
    done
    DUMP=$(ls -S "$out".* | head -1)
    TOTAL=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    [[ -n "$REQUESTS" && "$REQUESTS" -gt 0 && -n "$TOTAL" ]] || die "$name: no count (requests=$REQUESTS)"
}

# syscalls PORT PID: system calls per request of process PID (every thread) while wrk makes
# requests through it at c=1 for 2 s, counted by perf from the kernel's syscall tracepoint for
# exactly wrk's run. Not strace: it slows the traced process down so much that a read tried
# before waiting finds its bytes already there, and the count comes out lower than it is.
syscalls() {
    local port=$1 pid=$2
    perf stat -x, -o "$TMP/perf-syscalls.txt" -e raw_syscalls:sys_enter -p "$pid" -- \
        wrk -t1 -c1 -d2s "http://127.0.0.1:$port/ok" >"$TMP/wrk-syscalls.txt"
    awk -F, -v n="$(awk '/requests in/ {print $1}' "$TMP/wrk-syscalls.txt")" \
        '/raw_syscalls:sys_enter/ && n > 0 {printf "%.2f", $1 / n}' "$TMP/perf-syscalls.txt"
}

# aviary's proxy path, as the sidecar runs it.
proxy=$(free_port)
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$TMP/callgrind.out" \
    "$PROXY" "127.0.0.1:$proxy" "http://127.0.0.1:$upstream" >"$TMP/proxy.out" 2>"$TMP/proxy.err" &
vg=$!
started+=("$vg")
count proxy_alone "$proxy" "$vg" "$TMP/callgrind.out"
requests=$REQUESTS
total=$TOTAL
dump=$DUMP
[[ -z "${KEEP:-}" ]] || cp "$dump" "$KEEP"

# nginx's proxy_pass with upstream keep-alive, as bench/supervise/run.sh runs it, in one process
# (master_process off) so that callgrind counts the worker.
front=$(free_port)
nginx_conf "$TMP" front "$front" "location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }" \
    "upstream up { server 127.0.0.1:$upstream; keepalive 32; }"
sed -i '1i master_process off;' "$TMP/front.conf"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$TMP/nginx.callgrind.out" \
    "$NGINX" -p "$TMP" -c "$TMP/front.conf" >"$TMP/front.out" 2>"$TMP/front.err" &
nginx_vg=$!
started+=("$nginx_vg")
count nginx "$front" "$nginx_vg" "$TMP/nginx.callgrind.out"
nginx_requests=$REQUESTS
nginx_total=$TOTAL

echo "under callgrind, wrk -t1 -c1 for ${REQUESTS_SECONDS}s: proxy_alone $requests requests, nginx $nginx_requests"
echo "instructions per proxied request: aviary $((total / requests)), nginx $((nginx_total / nginx_requests))"

# System calls, on the programs run natively.
stop_pid "$vg"
stop_pid "$nginx_vg"
"$PROXY" "127.0.0.1:$proxy" "http://127.0.0.1:$upstream" >"$TMP/proxy.out" 2>"$TMP/proxy.err" &
native=$!
started+=("$native")
"$NGINX" -p "$TMP" -c "$TMP/front.conf" >"$TMP/front.out" 2>"$TMP/front.err" &
nginx_native=$!
started+=("$nginx_native")
wait_for 10 curl -fsS "http://127.0.0.1:$proxy/ok" || die "proxy_alone does not answer"
wait_for 10 curl -fsS "http://127.0.0.1:$front/ok" || die "the nginx proxy does not answer"
if perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
    echo "system calls per proxied request (perf, the syscall tracepoint):" \
        "aviary $(syscalls "$proxy" "$native"), nginx $(syscalls "$front" "$nginx_native")"
else
    echo "system calls per proxied request: not counted (perf cannot read the syscall tracepoint" \
        "here: it needs root or kernel.perf_event_paranoid=-1)"
fi
# Coroutine frames past Asio's per-thread cache (1,020 bytes) are allocated with memalign:
# docs/architecture.md, "Frames on the hot paths". Zero per request when every frame fits.
memaligns=$(callgrind_annotate --tree=caller --threshold=100 "$dump" 2>/dev/null |
    grep -E '< \./malloc/\./malloc/malloc\.c:memalign \(' | grep -oE '\([0-9,]+x\)' |
    tr -d '(),x' | awk '{n += $1} END {print n + 0}')
echo "frames allocated past Asio's cache per request: $(awk -v m="$memaligns" -v n="$requests" 'BEGIN {printf "%.2f", m / n}')"
echo
echo "instructions per request, by function (self):"
callgrind_annotate --inclusive=no "$dump" 2>/dev/null | grep -E '^ *[0-9,]+ +\( *[0-9.]+%\) ' |
    grep -v 'PROGRAM TOTALS' | head -"$TOP" |
    awk -v n="$requests" '{v = $1; gsub(",", "", v); s = $0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", s);
        sub(/ \[.*$/, "", s); gsub(/\(anonymous namespace\)/, "{anon}", s); sub(/\(.*$/, "", s); printf "%8.0f %s\n", v / n, substr(s, 1, 110)}'
