#!/usr/bin/env bash
# bench/probes: aviary's canary probes beside Prometheus blackbox_exporter (issue 17). Prints
# figures; it is never a timed test.
#
#   bench/probes/run.sh
#
# What runs (all on 127.0.0.1, every wait bounded, everything started is stopped on exit):
# 1. the target: nginx serving a 2-byte file (one worker, keep-alive, no access log);
# 2. blackbox_exporter (Debian's prometheus-blackbox-exporter) with an http_2xx module, driven
#    by `wrk -c CONCURRENCY` on /probe?target=...: each request is one probe of the target, as a
#    Prometheus scrape makes it. probes/s is wrk's rate; CPU per probe the exporter's CPU time
#    (utime + stime from /proc) over the probes it made;
# 3. aviary serve (SQLite, synchronous: full) with one scenario (an http step, `status == 200`),
#    driven by `wrk -c CONCURRENCY` on POST /api/v1/probes/target/run: each request is one run
#    of the scenario, stored durably (run, 5-minute bucket) before the answer. Same figures;
# 4. the schedule: aviary serve with SCENARIOS scenarios on 1-second intervals against the same
#    target, for LATENESS_SECONDS; start-time lateness p50/p99/max (how late each run started
#    against when it was due) and runs/s from GET /api/v1/probes, serve's CPU per run;
# 5. the same schedule with three alarm rules over every scenario (3 x SCENARIOS alarms), on a
#    store holding HISTORY_DAYS of every scenario's counts: the same figures, how many
#    evaluations the leader made and how long the last one took.
# Goals (issue 17): CPU per probe <= 1/2 of blackbox_exporter's, probes/s >= 2x, at the same
# concurrency; lateness is reported.
#
# Knobs (environment): BUILD=build-rel  DURATION=10  CONCURRENCY=8  SCENARIOS=1000
# LATENESS_SECONDS=30  HISTORY_DAYS=30  SKIP_DEPS=1  SKIP_BUILD=1  KEEP_TMP=1
# BENCH_TMP=<parent of the temp dir, default $BUILD: a real disk, not tmpfs>
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build-rel}
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-8}
SCENARIOS=${SCENARIOS:-1000}
LATENESS_SECONDS=${LATENESS_SECONDS:-30}
HISTORY_DAYS=${HISTORY_DAYS:-30}

say() { printf '\n== %s\n' "$*"; }
die() {
    printf 'bench/probes: %s\n' "$*" >&2
    exit 1
}
# shellcheck source=bench/common/lib.sh
source bench/common/lib.sh

if [[ -z "${SKIP_DEPS:-}" ]]; then
    scripts/install-deps.sh --bench
fi
BLACKBOX=$(command -v prometheus-blackbox-exporter) ||
    die "prometheus-blackbox-exporter is missing (scripts/install-deps.sh --bench)"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "nginx is missing (scripts/install-deps.sh --bench)"
command -v wrk >/dev/null || die "wrk is missing (scripts/install-deps.sh --bench)"
if [[ -z "${SKIP_BUILD:-}" ]]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" --target aviary
fi
AVIARY=$(realpath "$BUILD/aviary")
[[ -x $AVIARY ]] || die "build $BUILD/aviary first"

mkdir -p "${BENCH_TMP:-$BUILD}"
TMP=$(mktemp -d "$(realpath "${BENCH_TMP:-$BUILD}")/bench-probes.XXXXXX")
started=()
cleanup() {
    for p in "${started[@]}"; do
        stop_pid "$p" || true
    done
    [[ -n "${KEEP_TMP:-}" ]] || rm -rf "$TMP"
}
trap cleanup EXIT

CLK_TCK=$(getconf CLK_TCK)
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
wait_http() {
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
# wrk's requests/s, and its count of non-2xx answers and socket errors.
wrk_rate() { awk '/^Requests\/sec:/ {print $2}' "$1"; }
wrk_bad() {
    awk '/Non-2xx or 3xx responses:/ {n += $5} /Socket errors:/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$1"
}
cpu_us_per() {  # TICKS COUNT -> microseconds of CPU per item
    awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", (n > 0 ? t / hz * 1e6 / n : 0)}'
}

# --- the target: nginx ---------------------------------------------------------------------------
nginx_www "$TMP"
TARGET_PORT=$(free_port)
nginx_conf "$TMP" nginx "$TARGET_PORT" "root $TMP/www; location = /ok { default_type text/plain; }"
"$NGINX" -p "$TMP" -c "$TMP/nginx.conf" 2>"$TMP/nginx.stderr" &
started+=("$!")
TARGET="http://127.0.0.1:$TARGET_PORT/ok"
wait_http "$TARGET" || die "nginx does not answer on $TARGET"

# --- blackbox_exporter ---------------------------------------------------------------------------
say "blackbox_exporter $("$BLACKBOX" --version 2>&1 | head -1 | awk '{print $3}'), wrk -c $CONCURRENCY for ${DURATION}s"
cat >"$TMP/blackbox.yml" <<EOF
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      valid_status_codes: [200]
EOF
BB_PORT=$(free_port)
"$BLACKBOX" --config.file="$TMP/blackbox.yml" --web.listen-address="127.0.0.1:$BB_PORT" \
    --log.level=warn >"$TMP/blackbox.log" 2>&1 &
bb_pid=$!
started+=("$bb_pid")
BB_URL="http://127.0.0.1:$BB_PORT/probe?target=$TARGET&module=http_2xx"
wait_http "$BB_URL" || die "blackbox_exporter does not answer"
curl -fsS "$BB_URL" | grep -q '^probe_success 1' || die "blackbox_exporter's probe of $TARGET did not succeed"
wrk -t2 -c"$CONCURRENCY" -d2s "$BB_URL" >/dev/null  # warm-up
t0=$(proc_ticks "$bb_pid")
wrk -t2 -c"$CONCURRENCY" -d"${DURATION}s" "$BB_URL" | tee "$TMP/wrk-blackbox.txt"
t1=$(proc_ticks "$bb_pid")
BB_RATE=$(wrk_rate "$TMP/wrk-blackbox.txt")
BB_BAD=$(wrk_bad "$TMP/wrk-blackbox.txt")
BB_CPU=$(cpu_us_per $((t1 - t0)) "$(awk -v r="$BB_RATE" -v d="$DURATION" 'BEGIN {print r * d}')")
stop_pid "$bb_pid"

# --- aviary: a run on demand, stored ---------------------------------------------------------------
write_serve_config() {  # FILE DATA_DIR: the config of one serve
    cat >"$1" <<EOF
data_dir: $2
log: {level: warn}
server: {listen: 127.0.0.1:0, io_threads: 1}
store: {synchronous: full}
fleet: {nodes: []}
EOF
}
start_serve() {  # NAME CONFIG_BODY -> $serve_pid, $serve_addr
    local name=$1
    mkdir -p "$TMP/$name"
    rm -f "$TMP/$name/aviary.addr"
    write_serve_config "$TMP/$name.yaml" "$TMP/$name"
    printf '%s\n' "$2" >>"$TMP/$name.yaml"
    "$AVIARY" serve --config "$TMP/$name.yaml" >"$TMP/$name.out" 2>"$TMP/$name.log" &
    serve_pid=$!
    started+=("$serve_pid")
    for _ in $(seq 1 100); do
        [[ -s "$TMP/$name/aviary.addr" ]] && break
        sleep 0.1
    done
    [[ -s "$TMP/$name/aviary.addr" ]] || {
        tail -20 "$TMP/$name.log" >&2
        die "serve ($name) did not start"
    }
    serve_addr=$(head -1 "$TMP/$name/aviary.addr")
    wait_http "http://$serve_addr/healthz" || die "serve ($name) does not answer"
}

say "aviary serve, POST /api/v1/probes/target/run (each run stored), wrk -c $CONCURRENCY for ${DURATION}s"
start_serve ondemand "probes:
  max_concurrent: 64
  scenarios:
    target:
      enabled: false
      timeout: 5s
      steps:
        - http: {url: \"$TARGET\"}
          assert: [\"status == 200\"]"
RUN_URL="http://$serve_addr/api/v1/probes/target/run"
curl -fsS -X POST "$RUN_URL" | grep -q '"outcome":"passed"' || die "aviary's run of $TARGET did not pass"
printf 'wrk.method = "POST"\n' >"$TMP/post.lua"
wrk -t2 -c"$CONCURRENCY" -d2s -s "$TMP/post.lua" "$RUN_URL" >/dev/null
t0=$(proc_ticks "$serve_pid")
wrk -t2 -c"$CONCURRENCY" -d"${DURATION}s" -s "$TMP/post.lua" "$RUN_URL" | tee "$TMP/wrk-aviary.txt"
t1=$(proc_ticks "$serve_pid")
AV_RATE=$(wrk_rate "$TMP/wrk-aviary.txt")
AV_BAD=$(wrk_bad "$TMP/wrk-aviary.txt")
AV_CPU=$(cpu_us_per $((t1 - t0)) "$(awk -v r="$AV_RATE" -v d="$DURATION" 'BEGIN {print r * d}')")
AV_FAILED=$(curl -fsS "http://$serve_addr/metrics" |
    awk '/^aviary_probe_runs_total\{probe="target",outcome="(failed|broken)"\}/ {n += $2} END {print n + 0}')
stop_pid "$serve_pid"

# --- aviary: the schedule, without alarms and with them ----------------------------------------
# schedule NAME ALARM_LINES: SCENARIOS scenarios every 1s (and the alarm rules given, as YAML
# lines under probes.alarms), measured for LATENESS_SECONDS. Sets RATE, CPU, P50, P99, MAX, BAD,
# EVALS (alarm evaluations made), EVAL_MS (the last one's length), ALARMS and FIRING.
schedule() {
    local name=$1 alarm_lines=$2
    {
        echo "probes:"
        echo "  max_concurrent: 64"
        if [[ -n $alarm_lines ]]; then
            echo "  alarms:"
            printf '%s\n' "$alarm_lines"
        fi
        echo "  scenarios:"
        for i in $(seq 1 "$SCENARIOS"); do
            echo "    s$i: {interval: 1s, timeout: 5s, steps: [{http: {url: \"$TARGET\"}, assert: [\"status == 200\"]}]}"
        done
    } >"$TMP/$name-config.yaml"
    start_serve "$name" "$(cat "$TMP/$name-config.yaml")"
    if [[ -n $alarm_lines && $HISTORY_DAYS -gt 0 ]]; then
        # What an evaluation costs once the store holds a month of every scenario's counts: serve
        # made its schema; stopped, the store gets HISTORY_DAYS of 5-minute buckets (one run
        # each, all passed) and the hours and days summed from them, then serve starts again.
        stop_pid "$serve_pid"
        sqlite3 "$TMP/$name/aviary.db" <<SQL
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $SCENARIOS),
     b(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM b WHERE j < $HISTORY_DAYS * 288)
INSERT INTO probe_buckets (scenario, start, runs, failed, broken, duration_ms)
SELECT 's' || i, (CAST(strftime('%s', 'now') AS INTEGER) * 1000 / 300000 - j) * 300000, 300, 0, 0, 300
FROM s, b;
DELETE FROM probe_hours;
DELETE FROM probe_days;
-- Due times from before the stop would count the time it took as lateness.
DELETE FROM probe_schedule;
INSERT INTO probe_hours SELECT scenario, start - start % 3600000, sum(runs), sum(failed),
    sum(broken), sum(duration_ms) FROM probe_buckets GROUP BY 1, 2;
INSERT INTO probe_days SELECT scenario, start - start % 86400000, sum(runs), sum(failed),
    sum(broken), sum(duration_ms) FROM probe_buckets GROUP BY 1, 2;
SQL
        start_serve "$name" "$(cat "$TMP/$name-config.yaml")"
    fi
    sleep 3 # every scenario's first run falls within its first interval
    local metrics="http://$serve_addr/metrics" e0 e1 t0 t1 runs0 runs1
    evaluations() { curl -fsS "$metrics" | awk '/^aviary_scheduler_runs_total\{task="alarms"\}/ {n = $2} END {print n + 0}'; }
    runs0=$(curl -fsS "http://$serve_addr/api/v1/probes" | python3 -c 'import json,sys; print(json.load(sys.stdin)["scheduler"]["runs"])')
    e0=$(evaluations)
    t0=$(proc_ticks "$serve_pid")
    sleep "$LATENESS_SECONDS"
    t1=$(proc_ticks "$serve_pid")
    e1=$(evaluations)
    read -r runs1 P50 P99 MAX <<<"$(curl -fsS "http://$serve_addr/api/v1/probes" | python3 -c 'import json,sys; s=json.load(sys.stdin)["scheduler"]; print(s["runs"], s["lateness_p50_ms"], s["lateness_p99_ms"], s["lateness_max_ms"])')"
    RATE=$(awk -v n="$((runs1 - runs0))" -v s="$LATENESS_SECONDS" 'BEGIN {printf "%.0f", n / s}')
    CPU=$(cpu_us_per $((t1 - t0)) "$((runs1 - runs0))")
    BAD=$(curl -fsS "$metrics" |
        awk '/^aviary_probe_runs_total\{.*outcome="(failed|broken)"\}/ {n += $2} END {print n + 0}')
    EVALS=$((e1 - e0))
    EVAL_MS=$(curl -fsS "$metrics" |
        awk '/^aviary_scheduler_last_run_seconds\{task="alarms"\}/ {v = $2 * 1000} END {printf "%.1f", v}')
    read -r ALARMS FIRING <<<"$(curl -fsS "http://$serve_addr/api/v1/alarms" |
        python3 -c 'import json,sys; a=json.load(sys.stdin)["alarms"]; print(len(a), sum(1 for x in a if x["state"] == "firing"))')"
    stop_pid "$serve_pid"
}

say "aviary serve, $SCENARIOS scenarios every 1s for ${LATENESS_SECONDS}s"
schedule scheduled ""
SCHED_RATE=$RATE SCHED_CPU=$CPU SCHED_BAD=$BAD
SP50=$P50 SP99=$P99 SMAX=$MAX

# The default config's three alarm rules over every scenario: 3 x SCENARIOS alarms, evaluated
# by the leader every evaluate_every and (at most once a second) after runs are stored.
say "aviary serve, $SCENARIOS scenarios every 1s with 3 alarm rules each, for ${LATENESS_SECONDS}s"
schedule alarms "    availability: {kind: availability, threshold: 95%, period: 5m, periods: 5, breaching: 3}
    failing: {kind: consecutive, failures: 3}
    slo: {kind: slo, objective: 99.5%, window: 30d}"

# --- results -------------------------------------------------------------------------------------
say "machine"
echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "nproc:    $(nproc)"
echo "aviary:   $AVIARY (commit $(git rev-parse --short HEAD))"
echo "load avg: $(cut -d' ' -f1-3 /proc/loadavg)"

say "results (concurrency $CONCURRENCY, ${DURATION}s each)"
printf '%-44s %12s %14s %10s\n' "" "probes/s" "CPU us/probe" "not 2xx"
printf '%-44s %12s %14s %10s\n' "blackbox_exporter (wrk on /probe)" "$BB_RATE" "$BB_CPU" "$BB_BAD"
printf '%-44s %12s %14s %10s\n' "aviary (POST .../run, each run stored)" "$AV_RATE" "$AV_CPU" "$((AV_BAD + ${AV_FAILED%.*}))"
printf '\nschedule: %s scenarios every 1s: %s runs/s, %s us CPU per run, lateness p50 %s ms, p99 %s ms, max %s ms, %s runs failed\n' \
    "$SCENARIOS" "$SCHED_RATE" "$SCHED_CPU" "$SP50" "$SP99" "$SMAX" "$SCHED_BAD"
printf 'with 3 alarm rules (%s alarms, %s firing): %s runs/s, %s us CPU per run, lateness p50 %s ms, p99 %s ms, max %s ms; %s evaluations in %ss, the last took %s ms\n' \
    "$ALARMS" "$FIRING" "$RATE" "$CPU" "$P50" "$P99" "$MAX" "$EVALS" "$LATENESS_SECONDS" "$EVAL_MS"

say "goals"
awk -v a="$AV_CPU" -v b="$BB_CPU" 'BEGIN {printf "CPU per probe <= 1/2 of blackbox_exporter: %.1f vs %.1f us (%.2fx) -> %s\n", a, b, (b > 0 ? a / b : 0), (a <= b / 2 ? "MET" : "NOT MET")}'
awk -v a="$AV_RATE" -v b="$BB_RATE" 'BEGIN {printf "probes/s >= 2x blackbox_exporter: %.0f vs %.0f (%.2fx) -> %s\n", a, b, (b > 0 ? a / b : 0), (a >= 2 * b ? "MET" : "NOT MET")}'
echo "(the load generator, the target and the prober share the machine's cores)"
