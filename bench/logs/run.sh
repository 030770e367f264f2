#!/usr/bin/env bash
# bench/logs: ingest of logs over Bitahoy's WebSocket (issue 16). Prints figures; it is never a
# timed test.
#
#   bench/logs/run.sh          (or `make bench`)
#
# Builds Release (aviary, logs_bench, log_sqlite_rate, log_pg_copy), then on a real disk:
# 1. logs_bench: the real `aviary serve` (SQLite, logs.synchronous=full) and CONNECTIONS
#    WebSockets on /ws, each sending uploadLogs of BATCH lines one after another for DURATION s
#    after WARMUP s: lines/s acknowledged, p50/p99 per upload, serve's CPU per line and per
#    thread; then getLogs (timewindow 3600, one sender) p50, and the rows stored;
# 2. log_sqlite_rate: raw SQLite, one writer, the same rows in transactions of BATCH, WAL and
#    synchronous=FULL: the ceiling of aviary's storage path; then, as a diagnostic, the same
#    program writing the way aviary's log store does (each batch in a SAVEPOINT, each row
#    INSERT ... RETURNING id), which says how much of the gap is the statements' shape;
# 3. log_pg_copy, when PostgreSQL's binaries are installed (scripts/install-deps.sh): a
#    throwaway cluster in the temp dir with fsync and synchronous_commit on, CONNECTIONS
#    connections each COPYing BATCH rows at a time: the usual bulk-ingest path; then
#    logs_bench again with serve on that cluster (its log store's partitioned tables);
# and prints the table, the goal and the ratio to the raw SQLite ceiling.
#
# Knobs (environment): BUILD=build  CONNECTIONS=4  BATCH=1000  DURATION=10  WARMUP=2
# MESSAGE_BYTES=100  QUERIES=5  GOAL_LINES=200000  SKIP_PG=1 (no PostgreSQL peer)
# SKIP_DIAG=1 (no aviary-shaped raw SQLite row)
# BENCH_TMP=<parent of the temp dir, default $BUILD: must be a real disk, not tmpfs>
# SKIP_BUILD=1  KEEP_TMP=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
CONNECTIONS=${CONNECTIONS:-4}
BATCH=${BATCH:-1000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
MESSAGE_BYTES=${MESSAGE_BYTES:-100}
QUERIES=${QUERIES:-5}
GOAL_LINES=${GOAL_LINES:-200000}

die() {
    printf 'bench/logs: %s\n' "$*" >&2
    exit 1
}
# shellcheck source=bench/common/lib.sh
source "$ROOT/bench/common/lib.sh"

if [[ -z "${SKIP_BUILD:-}" ]]; then
    generator=()
    [[ -f "$BUILD/CMakeCache.txt" ]] || generator=(-G Ninja)
    cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DAVIARY_BENCH=ON >/dev/null
    cmake --build "$BUILD" --target aviary logs_bench log_sqlite_rate log_pg_copy
fi
bench="$BUILD/bench/logs/logs_bench"
sqlite_rate="$BUILD/bench/logs/log_sqlite_rate"
pg_copy="$BUILD/bench/logs/log_pg_copy"
for program in "$bench" "$sqlite_rate" "$pg_copy"; do
    [[ -x "$program" ]] ||
        die "$program was not built (is libbenchmark-dev installed? bench/ needs it)"
done

# PostgreSQL's server binaries: Debian's, or on PATH.
PG_BIN=""
if [[ -z "${SKIP_PG:-}" ]]; then
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]] && PG_BIN=$dir
    done
    if [[ -z "$PG_BIN" ]] && command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        PG_BIN=$(dirname "$(command -v initdb)")
    fi
fi

BENCH_TMP=${BENCH_TMP:-$BUILD}
mkdir -p "$BENCH_TMP"
tmp=$(mktemp -d "$(realpath "$BENCH_TMP")/bench-logs.XXXXXX")
chmod 755 "$tmp"  # the PostgreSQL cluster runs as postgres when this runs as root
pg_started=""
# as_pg CMD...: runs a PostgreSQL binary as the postgres user when this is root (it refuses
# to run as root).
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}
cleanup() {
    if [[ -n "$pg_started" ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$tmp/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    [[ -n "${KEEP_TMP:-}" ]] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

printf '== machine\n'
printf '  %s, %s cores, %s\n' "$(uname -sr)" "$(nproc)" \
    "$(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)"
printf '  disk under %s: %s\n' "$tmp" "$(df -hT "$tmp" | awk 'NR==2 {print $2}')"
printf '  aviary %s, commit %s\n' "$("$BUILD/aviary" version 2>/dev/null || echo "?")" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo "?")"
printf '  load average before the run: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"

# RESULT lines are "RESULT k=v k=v": field FILE NAME from the last one.
field() { grep '^RESULT ' "$1" | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# --- aviary ------------------------------------------------------------------------------------
printf '\n== aviary serve over /ws\n'
mkdir -p "$tmp/aviary"
"$bench" --dir "$tmp/aviary" --connections "$CONNECTIONS" --batch "$BATCH" \
    --duration "$DURATION" --warmup "$WARMUP" --message-bytes "$MESSAGE_BYTES" \
    --queries "$QUERIES" | tee "$tmp/aviary.txt" || true

# --- raw SQLite --------------------------------------------------------------------------------
printf '\n== raw SQLite on the same disk: one writer, %s rows per commit, WAL, synchronous=FULL\n' \
    "$BATCH"
mkdir -p "$tmp/sqlite"
"$sqlite_rate" --db "$tmp/sqlite/logs.db" --batch "$BATCH" --senders "$CONNECTIONS" \
    --message-bytes "$MESSAGE_BYTES" --duration "$DURATION" --warmup "$WARMUP" \
    --queries "$QUERIES" --label "sqlite-b$BATCH" | tee "$tmp/sqlite.txt" || true
if [[ -z "${SKIP_DIAG:-}" ]]; then
    printf '\n== diagnostic: the same, written as aviary writes (SAVEPOINT per batch, INSERT ... RETURNING id)\n'
    rm -f "$tmp/sqlite/logs.db"*
    "$sqlite_rate" --db "$tmp/sqlite/logs.db" --batch "$BATCH" --senders "$CONNECTIONS" \
        --message-bytes "$MESSAGE_BYTES" --duration "$DURATION" --warmup "$WARMUP" \
        --queries 0 --aviary-shape --label "sqlite-aviary-shape-b$BATCH" |
        tee "$tmp/sqlite-shape.txt" || true
fi

# --- PostgreSQL COPY ---------------------------------------------------------------------------
if [[ -n "$PG_BIN" ]]; then
    printf '\n== PostgreSQL (%s) COPY on the same disk: %s connections, %s rows per COPY, fsync on\n' \
        "$("$PG_BIN/postgres" --version | awk '{print $3}')" "$CONNECTIONS" "$BATCH"
    mkdir -p "$tmp/pg"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$tmp/pg"
    as_pg "$PG_BIN/initdb" -D "$tmp/pg/data" -U postgres -A trust -E UTF8 --locale=C \
        >"$tmp/pg/initdb.log" 2>&1 || { cat "$tmp/pg/initdb.log" >&2; die "initdb failed"; }
    port=$(free_port)
    # Server defaults, which are durable (fsync, synchronous_commit, full_page_writes on);
    # only where it listens is set.
    as_pg "$PG_BIN/pg_ctl" -D "$tmp/pg/data" -w -t 60 -l "$tmp/pg/server.log" \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$tmp/pg" \
        start >/dev/null || { cat "$tmp/pg/server.log" >&2; die "PostgreSQL did not start"; }
    pg_started=1
    pg_pid=$(head -1 "$tmp/pg/data/postmaster.pid")
    pg_url="postgresql://postgres@127.0.0.1:$port/postgres"
    printf '  %s (pid %s): fsync=%s synchronous_commit=%s\n' "$pg_url" "$pg_pid" \
        "$(psql -tA "$pg_url" -c 'SHOW fsync')" "$(psql -tA "$pg_url" -c 'SHOW synchronous_commit')"
    "$pg_copy" --url "$pg_url" --connections "$CONNECTIONS" --batch "$BATCH" \
        --message-bytes "$MESSAGE_BYTES" --duration "$DURATION" --warmup "$WARMUP" \
        --queries "$QUERIES" --server-pid "$pg_pid" --label "postgres-copy-b$BATCH" |
        tee "$tmp/pg.txt" || true
    # aviary on the same cluster: serve's log store in a database of its own (the COPY peer's
    # table is named log_records too).
    psql -q "$pg_url" -c 'CREATE DATABASE aviary' >/dev/null
    printf '\n== aviary serve over /ws on PostgreSQL (the same cluster)\n'
    mkdir -p "$tmp/aviary-pg"
    "$bench" --dir "$tmp/aviary-pg" --connections "$CONNECTIONS" --batch "$BATCH" \
        --duration "$DURATION" --warmup "$WARMUP" --message-bytes "$MESSAGE_BYTES" \
        --queries "$QUERIES" --store-url "postgresql://postgres@127.0.0.1:$port/aviary" \
        --db-pid "$pg_pid" --label aviary-postgres | tee "$tmp/aviary-pg.txt" || true
    as_pg "$PG_BIN/pg_ctl" -D "$tmp/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    pg_started=""
else
    printf '\n== PostgreSQL COPY: skipped (%s)\n' \
        "$([[ -n "${SKIP_PG:-}" ]] && echo "SKIP_PG is set" || echo "no initdb/pg_ctl found")"
fi

# --- the table ---------------------------------------------------------------------------------
a=$tmp/aviary.txt
s=$tmp/sqlite.txt
printf '\n== results (%s cores, %s; load average now %s)\n' "$(nproc)" \
    "$(df -PT "$tmp" | awk 'NR==2 {print $2}')" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-46s %10s %8s %8s %9s %8s %10s\n' "durable ingest, $BATCH lines per upload/commit/COPY" \
    "lines/s" "p50 ms" "p99 ms" "failures" "cores" "us/line"
printf '%-46s %10s %8s %8s %9s %8s %10s\n' "aviary /ws, $CONNECTIONS connections" \
    "$(field "$a" lines_per_s)" "$(field "$a" p50_ms)" "$(field "$a" p99_ms)" \
    "$(field "$a" failures)" "$(field "$a" serve_cores)" "$(field "$a" serve_us_per_line)"
printf '%-46s %10s %8s %8s %9s %8s %10s\n' "raw SQLite, 1 writer (the ceiling)" \
    "$(field "$s" rows_per_s)" "$(field "$s" p50_ms)" "$(field "$s" p99_ms)" \
    "$(field "$s" errors)" "$(field "$s" cores)" "$(field "$s" us_per_row)"
if [[ -f "$tmp/sqlite-shape.txt" ]]; then
    d=$tmp/sqlite-shape.txt
    printf '%-46s %10s %8s %8s %9s %8s %10s\n' "(diagnostic) raw SQLite, aviary's statements" \
        "$(field "$d" rows_per_s)" "$(field "$d" p50_ms)" "$(field "$d" p99_ms)" \
        "$(field "$d" errors)" "$(field "$d" cores)" "$(field "$d" us_per_row)"
fi
if [[ -f "$tmp/aviary-pg.txt" ]]; then
    g=$tmp/aviary-pg.txt
    printf '%-46s %10s %8s %8s %9s %8s %10s\n' "aviary /ws on PostgreSQL, $CONNECTIONS connections" \
        "$(field "$g" lines_per_s)" "$(field "$g" p50_ms)" "$(field "$g" p99_ms)" \
        "$(field "$g" failures)" \
        "$(awk -v s="$(field "$g" serve_cores)" -v d="$(field "$g" db_cores)" \
            'BEGIN {printf "%.2f", s + d}')" "$(field "$g" serve_us_per_line)"
fi
if [[ -f "$tmp/pg.txt" ]]; then
    p=$tmp/pg.txt
    printf '%-46s %10s %8s %8s %9s %8s %10s\n' "PostgreSQL COPY, $CONNECTIONS connections" \
        "$(field "$p" rows_per_s)" "$(field "$p" p50_ms)" "$(field "$p" p99_ms)" \
        "$(field "$p" errors)" "$(field "$p" cores)" "$(field "$p" us_per_row)"
fi
echo "(p50, p99: per upload / commit / COPY; cores, us/line: the server's CPU over the window -"
echo " serve, the raw SQLite program itself, PostgreSQL's postmaster and children; for aviary on"
echo " PostgreSQL serve's and PostgreSQL's together, us/line serve's alone)"
printf '%-46s %10s %10s\n' "one sender's lines, newest 10,000 in 3600 s" "p50 ms" "rows"
printf '%-46s %10s %10s\n' "aviary getLogs over /ws (answer included)" \
    "$(field "$a" query_p50_ms)" "$(field "$a" query_entries)"
printf '%-46s %10s %10s\n' "raw SQLite SELECT" "$(field "$s" query_p50_ms)" \
    "$(field "$s" query_rows)"
if [[ -f "$tmp/pg.txt" ]]; then
    printf '%-46s %10s %10s\n' "PostgreSQL SELECT" "$(field "$p" query_p50_ms)" \
        "$(field "$p" query_rows)"
fi
printf '%-46s %10s %10s\n' "aviary getLogs, a sender with 5 lines in all" \
    "$(field "$a" rare_p50_ms)" 5
echo "aviary stored $(field "$a" stored) log rows ($(field "$a" acked) lines acknowledged)"

printf '\n== goal (%s-core machine)\n' "$(nproc)"
verdict() { if awk "BEGIN {exit !($1)}"; then echo "MET"; else echo "NOT MET"; fi; }
lines=$(field "$a" lines_per_s)
ceiling=$(field "$s" rows_per_s)
failures=$(field "$a" failures)
echo ">= $GOAL_LINES lines/s durable on SQLite: ${lines:-?} lines/s ->" \
    "$(verdict "${lines:-0} >= $GOAL_LINES && ${failures:-1} == 0")"
echo "aviary / raw SQLite ceiling: $(awk -v a="${lines:-0}" -v c="${ceiling:-0}" \
    'BEGIN {printf "%.2f", c ? a / c : 0}')"
if [[ "${failures:-1}" != 0 ]]; then
    echo "!!! ${failures:-?} uploads were not acknowledged as expected: see the lines marked !!! above"
fi
echo "(client, server and the peers share the same $(nproc) cores)"
