#!/usr/bin/env bash
# bench/supervise: `aviary supervise` side by side with supervisord 4.2 and nginx in one run.
#
# What runs (all on 127.0.0.1, every wait bounded, everything started is stopped on exit):
# 1. restart after kill -9: the node is bench/supervise's restart_probe, which notes when it
#    started; the probe's `kill` mode SIGKILLs the node KILLS times (every GAP_MS) and times
#    each kill to the next start. aviary with `restart.stable_after: 50ms` (each kill is of a
#    stable run, so each restart is the immediate first one), supervisord with autorestart and
#    startsecs=0.
# 2. log relay: `seq 1 LINES` as the node; aviary with --restart never (it exits after the node)
#    and its stdout to a file; supervisord with the program's stdout to a log file. Wall time
#    from start to the whole output in the file, checked byte for byte against seq's own.
# 3. RSS: the peak RSS (VmHWM) of the aviary sidecar and of supervisord during the relay.
# 4. proxy: nginx serving a 2-byte file is the upstream; wrk -t1 at c=1 and c=32 for PROXY_SECONDS
#    against it directly, through aviary's gated proxy (--chain none: ready while the upstream
#    accepts connections) and through an nginx proxy_pass with upstream keep-alive (one worker,
#    as the sidecar's proxy has one I/O thread); PROXY_ROUNDS rounds of the three in turn, and
#    each figure is the median of its rounds.
#
# Reproduce: bench/supervise/run.sh (SKIP_BUILD=1 SKIP_DEPS=1 to reuse build/ and the installed
# peers; LINES, KILLS, GAP_MS, PROXY_SECONDS, PROXY_ROUNDS to change the sizes). Figures:
# bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
LINES=${LINES:-10000000}
KILLS=${KILLS:-50}
GAP_MS=${GAP_MS:-150}
PROXY_SECONDS=${PROXY_SECONDS:-5}
PROXY_ROUNDS=${PROXY_ROUNDS:-3}

say() { printf '\n== %s\n' "$*"; }
die() {
    printf 'bench/supervise: %s\n' "$*" >&2
    exit 1
}
# shellcheck source=bench/common/lib.sh
source bench/common/lib.sh

if [[ -z "${SKIP_DEPS:-}" ]]; then
    scripts/install-deps.sh --bench
fi
command -v wrk >/dev/null || die "wrk is missing (scripts/install-deps.sh --bench)"
command -v supervisord >/dev/null || die "supervisord is missing (scripts/install-deps.sh --bench)"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x "$NGINX" ]] || die "nginx is missing (scripts/install-deps.sh --bench)"
if [[ -z "${SKIP_BUILD:-}" ]]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" --target aviary restart_probe
fi
AVIARY=$(realpath "$BUILD/aviary")
PROBE=$(realpath "$BUILD/bench/supervise/restart_probe")
[[ -x "$AVIARY" && -x "$PROBE" ]] || die "build aviary and restart_probe first"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-supervise.XXXXXX")
chmod 755 "$TMP"
started=()
cleanup() {
    local pid
    for pid in "${started[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${started[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    [[ -n "${KEEP_TMP:-}" ]] && echo "bench/supervise: kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM



wait_for() {  # wait_for SECONDS COMMAND...: polls COMMAND every 50 ms
    local limit=$(($1 * 20))
    shift
    for _ in $(seq 1 "$limit"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    return 1
}

# The sidecar's control address, from its start line.
control_of() { sed -n 's/.*control=\([0-9.:]*\).*/\1/p' "$1" | head -1; }

supervisord_conf() {  # supervisord_conf DIR PROGRAM_LINES...
    local dir=$1
    shift
    mkdir -p "$dir"
    cat >"$dir/supervisord.conf" <<EOF
[supervisord]
nodaemon=true
logfile=$dir/supervisord.log
pidfile=$dir/supervisord.pid
childlogdir=$dir
[unix_http_server]
file=$dir/supervisor.sock
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://$dir/supervisor.sock
[program:node]
$(printf '%s\n' "$@")
EOF
}

declare -A R

say "machine"
echo "date:        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "nproc:       $(nproc)"
echo "aviary:      $AVIARY (commit $(git rev-parse --short HEAD))"
echo "supervisord: $(supervisord --version)"
echo "nginx:       $("$NGINX" -v 2>&1 | sed 's/.*version: //')"
echo "load avg:    $(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. restart after kill -9 -----------------------------------------------------------------
say "restart after kill -9: $KILLS kills, one every ${GAP_MS} ms"
dir=$TMP/restart-aviary
mkdir -p "$dir"
printf 'restart:\n  stable_after: 50ms\n' >"$dir/node.yaml"
"$AVIARY" supervise --config "$dir/node.yaml" --chain none --proxy "" --control 127.0.0.1:0 \
    --state-dir "$dir/state" -- "$PROBE" node "$dir/starts" >"$dir/out" 2>"$dir/err" &
pid=$!
started+=("$pid")
wait_for 10 test -s "$dir/starts" || die "aviary did not start the probe: $(cat "$dir/err")"
line=$("$PROBE" kill "$dir/starts" "$KILLS" "$GAP_MS")
echo "aviary:      $line"
R[rs_p50/aviary]=$(sed 's/.*p50_ms=\([0-9.]*\).*/\1/' <<<"$line")
R[rs_p99/aviary]=$(sed 's/.*p99_ms=\([0-9.]*\).*/\1/' <<<"$line")
stop_pid "$pid"

dir=$TMP/restart-supervisord
supervisord_conf "$dir" "command=$PROBE node $dir/starts" autostart=true autorestart=true \
    startsecs=0 startretries=1000000 stdout_logfile=NONE stderr_logfile=NONE
supervisord -c "$dir/supervisord.conf" >"$dir/out" 2>&1 &
pid=$!
started+=("$pid")
wait_for 20 test -s "$dir/starts" || die "supervisord did not start the probe"
# supervisord polls: fewer kills, each given a second to come back.
sv_kills=$((KILLS < 20 ? KILLS : 20))
line=$("$PROBE" kill "$dir/starts" "$sv_kills" "$GAP_MS")
echo "supervisord: $line"
R[rs_p50/sv]=$(sed 's/.*p50_ms=\([0-9.]*\).*/\1/' <<<"$line")
R[rs_p99/sv]=$(sed 's/.*p99_ms=\([0-9.]*\).*/\1/' <<<"$line")
stop_pid "$pid"

# --- 2 and 3. log relay and RSS -----------------------------------------------------------------
say "log relay: seq 1 $LINES"
seq 1 "$LINES" >"$TMP/expected"
bytes=$(stat -c %s "$TMP/expected")
echo "expected output: $bytes bytes"

peak_rss_kb() {  # peak_rss_kb PID: VmHWM sampled until PID exits (or is stopped)
    local pid=$1 peak=0 hwm
    while kill -0 "$pid" 2>/dev/null; do
        hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        [[ -n "$hwm" && "$hwm" -gt "$peak" ]] && peak=$hwm
        sleep 0.02
    done
    echo "$peak"
}

dir=$TMP/relay-aviary
mkdir -p "$dir"
t0=$(date +%s.%N)
"$AVIARY" supervise --chain none --proxy "" --restart never --control 127.0.0.1:0 \
    --state-dir "$dir/state" -- seq 1 "$LINES" >"$dir/out" 2>"$dir/err" &
pid=$!
peak=$(peak_rss_kb "$pid")
wait "$pid" || true
t1=$(date +%s.%N)
if cmp -s "$dir/out" "$TMP/expected"; then same=yes; else same=NO; fi
R[relay_s/aviary]=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
R[relay_lps/aviary]=$(awk -v a="$t0" -v b="$t1" -v n="$LINES" 'BEGIN {printf "%.0f", n / (b - a)}')
R[relay_same/aviary]=$same
R[rss_mb/aviary]=$(awk -v k="$peak" 'BEGIN {printf "%.1f", k / 1024}')
echo "aviary:      ${R[relay_s/aviary]} s, ${R[relay_lps/aviary]} lines/s, byte-identical: $same, peak RSS ${R[rss_mb/aviary]} MB"

dir=$TMP/relay-supervisord
supervisord_conf "$dir" "command=seq 1 $LINES" autostart=true autorestart=false startsecs=0 \
    "stdout_logfile=$dir/out" stdout_logfile_maxbytes=0 stdout_logfile_backups=0 \
    "stderr_logfile=$dir/err" stderr_logfile_maxbytes=0
t0=$(date +%s.%N)
supervisord -c "$dir/supervisord.conf" >"$dir/supervisord.out" 2>&1 &
pid=$!
started+=("$pid")
(peak_rss_kb "$pid" >"$dir/peak") &
sampler=$!
# Done when the whole output is in the log file (bounded: 10 minutes).
for _ in $(seq 1 12000); do
    [[ -f "$dir/out" && $(stat -c %s "$dir/out") -ge $bytes ]] && break
    sleep 0.05
done
t1=$(date +%s.%N)
stop_pid "$pid"
wait "$sampler" || true
if cmp -s "$dir/out" "$TMP/expected"; then same=yes; else same=NO; fi
R[relay_s/sv]=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
R[relay_lps/sv]=$(awk -v a="$t0" -v b="$t1" -v n="$LINES" 'BEGIN {printf "%.0f", n / (b - a)}')
R[relay_same/sv]=$same
R[rss_mb/sv]=$(awk -v k="$(cat "$dir/peak")" 'BEGIN {printf "%.1f", k / 1024}')
echo "supervisord: ${R[relay_s/sv]} s, ${R[relay_lps/sv]} lines/s, byte-identical: $same, peak RSS ${R[rss_mb/sv]} MB"

# --- 4. proxy -----------------------------------------------------------------------------------
say "proxy: wrk -t1 for ${PROXY_SECONDS}s at c=1 and c=32, $PROXY_ROUNDS rounds (medians)"
mkdir -p "$TMP/www" "$TMP/nginx-temp"
printf 'ok' >"$TMP/www/ok"
chmod 755 "$TMP/www"
chmod 644 "$TMP/www/ok"
nginx_conf() {  # nginx_conf NAME PORT SERVER_BODY [HTTP_EXTRA]
    cat >"$TMP/$1.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/$1.pid;
error_log $TMP/$1-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/nginx-temp/body;
    proxy_temp_path $TMP/nginx-temp/proxy;
    fastcgi_temp_path $TMP/nginx-temp/fastcgi;
    uwsgi_temp_path $TMP/nginx-temp/uwsgi;
    scgi_temp_path $TMP/nginx-temp/scgi;
    ${4:-}
    server {
        listen 127.0.0.1:$2;
        $3
    }
}
EOF
}
upstream=$(free_port)
nginx_conf upstream "$upstream" "root $TMP/www; location = /ok { default_type text/plain; }"
"$NGINX" -p "$TMP" -c "$TMP/upstream.conf" 2>"$TMP/upstream.stderr" &
started+=("$!")
wait_for 10 curl -fsS "http://127.0.0.1:$upstream/ok" || die "the upstream nginx does not answer"

front=$(free_port)
nginx_conf front "$front" "location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }" \
    "upstream up { server 127.0.0.1:$upstream; keepalive 32; }"
"$NGINX" -p "$TMP" -c "$TMP/front.conf" 2>"$TMP/front.stderr" &
started+=("$!")
wait_for 10 curl -fsS "http://127.0.0.1:$front/ok" || die "the nginx proxy does not answer"

proxy=$(free_port)
dir=$TMP/proxy-aviary
mkdir -p "$dir"
"$AVIARY" supervise --chain none --proxy "127.0.0.1:$proxy" \
    --upstream "http://127.0.0.1:$upstream" --control 127.0.0.1:0 --state-dir "$dir/state" \
    -- sleep 3600 >"$dir/out" 2>"$dir/err" &
started+=("$!")
wait_for 20 curl -fsS "http://127.0.0.1:$proxy/ok" || die "aviary's proxy does not answer: $(cat "$dir/err")"

# p50 in microseconds from wrk's --latency table.
wrk_p50_us() {
    awk '$1 == "50%" {v=$2; u=v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v);
         if (u == "us") print v; else if (u == "ms") print v * 1000; else if (u == "s") print v * 1e6}' "$1"
}
wrk_rps() { awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$1"; }
# PROXY_ROUNDS rounds of direct, aviary, nginx in turn, so that each side sees the same drift of
# the machine; each figure is the median of its rounds.
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
declare -A P50S RPSS
for ((round = 1; round <= PROXY_ROUNDS; round++)); do
    for c in 1 32; do
        for target in "direct:$upstream" "aviary:$proxy" "nginx:$front"; do
            name=${target%%:*}
            port=${target#*:}
            out=$TMP/wrk-$name-c$c-r$round.txt
            wrk -t1 -c"$c" -d"${PROXY_SECONDS}s" --latency "http://127.0.0.1:$port/ok" >"$out" 2>&1 || true
            p50=$(wrk_p50_us "$out")
            rps=$(wrk_rps "$out")
            P50S[$name/$c]+="${p50:-0} "
            RPSS[$name/$c]+="${rps:-0} "
            echo "round $round, c=$c $name: $rps r/s, p50 $p50 us"
        done
    done
done
for c in 1 32; do
    for name in direct aviary nginx; do
        # shellcheck disable=SC2086 # word splitting intended: the rounds' values
        R[p50/$name/$c]=$(median ${P50S[$name/$c]})
        # shellcheck disable=SC2086
        R[rps/$name/$c]=$(median ${RPSS[$name/$c]})
    done
done

# --- the table ----------------------------------------------------------------------------------
say "results ($(nproc) cores; load average now $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-44s %14s %14s\n' "" "aviary" "supervisord"
printf '%-44s %14s %14s\n' "restart after kill -9, p50 ms" "${R[rs_p50/aviary]}" "${R[rs_p50/sv]}"
printf '%-44s %14s %14s\n' "restart after kill -9, p99 ms" "${R[rs_p99/aviary]}" "${R[rs_p99/sv]}"
printf '%-44s %14s %14s\n' "relay of $LINES lines, s" "${R[relay_s/aviary]}" "${R[relay_s/sv]}"
printf '%-44s %14s %14s\n' "relay, lines/s" "${R[relay_lps/aviary]}" "${R[relay_lps/sv]}"
printf '%-44s %14s %14s\n' "relay byte-identical" "${R[relay_same/aviary]}" "${R[relay_same/sv]}"
printf '%-44s %14s %14s\n' "peak RSS while relaying, MB" "${R[rss_mb/aviary]}" "${R[rss_mb/sv]}"
echo
printf '%-28s %12s %12s %12s %12s %12s\n' "proxy (wrk -t1, medians)" "direct r/s" "aviary r/s" "nginx r/s" "aviary +p50" "nginx +p50"
for c in 1 32; do
    add_a=$(awk -v a="${R[p50/aviary/$c]}" -v d="${R[p50/direct/$c]}" 'BEGIN {printf "%.0f us", a - d}')
    add_n=$(awk -v a="${R[p50/nginx/$c]}" -v d="${R[p50/direct/$c]}" 'BEGIN {printf "%.0f us", a - d}')
    printf '%-28s %12s %12s %12s %12s %12s\n' "c=$c" "${R[rps/direct/$c]}" "${R[rps/aviary/$c]}" \
        "${R[rps/nginx/$c]}" "$add_a" "$add_n"
done

say "goals"
verdict() { awk "BEGIN {exit !($1)}" && echo MET || echo "NOT MET"; }
echo "restart p50 <= 10 ms: ${R[rs_p50/aviary]} ms -> $(verdict "${R[rs_p50/aviary]} <= 10")"
ratio=$(awk -v a="${R[relay_lps/aviary]}" -v s="${R[relay_lps/sv]}" 'BEGIN {printf "%.2f", a / s}')
echo "log relay >= 1.5 x supervisord: ${ratio}x -> $(verdict "$ratio >= 1.5")"
echo "RSS <= 10 MB: ${R[rss_mb/aviary]} MB -> $(verdict "${R[rss_mb/aviary]} <= 10")"
for c in 1 32; do
    add_a=$(awk -v a="${R[p50/aviary/$c]}" -v d="${R[p50/direct/$c]}" 'BEGIN {print a - d}')
    add_n=$(awk -v a="${R[p50/nginx/$c]}" -v d="${R[p50/direct/$c]}" 'BEGIN {print a - d}')
    echo "c=$c proxy added p50 <= 1.5 x nginx's: ${add_a} us vs ${add_n} us -> $(verdict "$add_a <= 1.5 * $add_n")"
    ra=$(awk -v p="${R[rps/aviary/$c]}" -v d="${R[rps/direct/$c]}" 'BEGIN {printf "%.2f", p / d}')
    rn=$(awk -v p="${R[rps/nginx/$c]}" -v d="${R[rps/direct/$c]}" 'BEGIN {printf "%.2f", p / d}')
    echo "c=$c proxied/direct throughput >= nginx's: $ra vs $rn -> $(verdict "$ra >= $rn")"
done
echo "(all programs shared the same $(nproc) cores: wrk, the proxies and the upstream compete for CPU)"
