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
#    accepts connections) and through two nginx proxy_pass fronts with upstream keep-alive (one
#    worker each, as the sidecar's proxy has one I/O thread):
#    - "nginx" does the same job as aviary's proxy: it adds X-Forwarded-For, X-Forwarded-Proto,
#      X-Forwarded-Host and Via to the request and Via to the response, the headers aviary's
#      proxy always adds (docs/supervise.md, "The gated proxy"). The goals are read against it.
#    - "nginx-twin" is the control: a second nginx with the same configuration, measured and
#      judged exactly as aviary is. Two identical programs differ only by the machine's noise,
#      so what the twin reads against nginx (its ratio verdict, its by-round median) is how
#      large a difference this run can tell from none. In the first six runs with it (18
#      rounds each, bench/RESULTS.md) the twin read 0.987-1.018 of nginx by round and missed
#      the ratio goal in about half of them.
#    PROXY_ROUNDS rounds of direct and the three proxies in turn, the proxies' order taking each
#    of its 6 permutations in turn (the rounds are rounded up to a multiple of 6, so that each
#    proxy runs right after the direct run as often as any other: that place reads 5-8 % lower,
#    whichever proxy has it); each measured run after PROXY_WARMUP seconds of the same load, not
#    counted. Each figure is the median of its rounds. A proxy's
#    throughput ratio is the median over the rounds of its r/s over the direct r/s of the same
#    round; beside it, the median of aviary's r/s over each nginx's, round by round. Beside those,
#    each proxy's CPU time (user + system, from /proc/PID/stat: every thread of the sidecar,
#    nginx's one worker) over the requests wrk made through it in the same run, as µs per
#    request. Most of it is system time (the loopback stack, the wakeups), so it moves with the
#    machine as r/s does; bench/supervise/proxy_cost.sh counts the user-space instructions and
#    the system calls of the proxies, which do not move.
# 5. backup: a data dir of BACKUP_MB MB (MB = 2^20 bytes) of small files (16-256 KiB, 32 to a
#    directory in dNN/eNN; half random, half repetitive bytes, from a seeded generator, so the
#    same tree every run) copied to a directory on the same file system by `rsync -a`, by
#    `tar -cf - | zstd -1 -T0` (and back by `zstd -dc | tar -xf -`), and by aviary's
#    BackupStore (backup_bench: a full backup, a second one with nothing changed, which
#    hard-links every file, and a restore of the first into an empty dir). aviary's backup and
#    restore end with syncfs, so each peer's copy is followed by `sync -f DST`, timed apart:
#    "rsync" is the copy alone, "rsync+sync" the copy then the flush. Beside the unchanged
#    backup, `rsync -a --link-dest` (its hard-link counterpart). Each timed step starts with no
#    dirty pages (an untimed `sync` before it) and the source in the page cache (the cache
#    cannot be dropped here). BACKUP_ROUNDS rounds of the three in turn, the first rotating;
#    nothing is removed within a round (on ext4 without a journal, removed inodes slow the next
#    creations down for dirty_expire_centisecs: the rounds are that far apart there). Each
#    figure is the median of its rounds; MB/s is the tree's file bytes over the wall time. The
#    goal (issue): aviary's backup and restore within 1.2x of rsync's time.
#
# Reproduce: bench/supervise/run.sh (SKIP_BUILD=1 SKIP_DEPS=1 to reuse build/ and the installed
# peers; LINES, KILLS, GAP_MS, PROXY_SECONDS, PROXY_ROUNDS, PROXY_WARMUP, BACKUP_MB, BACKUP_ROUNDS
# to change the sizes; ONLY=backup for section 5 alone, ONLY=sidecar for sections 1-4 alone). The generated
# tree and the copies are in the temp dir (TMPDIR, default /tmp), removed on exit (KEEP_TMP=1
# keeps it). Figures: bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
LINES=${LINES:-10000000}
KILLS=${KILLS:-50}
GAP_MS=${GAP_MS:-150}
PROXY_SECONDS=${PROXY_SECONDS:-5}
PROXY_ROUNDS=${PROXY_ROUNDS:-12}  # one connection varies by 10 % from round to round here
PROXY_ROUNDS=$(((PROXY_ROUNDS + 5) / 6 * 6))  # each order of the three proxies as often
PROXY_WARMUP=${PROXY_WARMUP:-1}
BACKUP_MB=${BACKUP_MB:-1024}
BACKUP_ROUNDS=${BACKUP_ROUNDS:-3}
ONLY=${ONLY:-}

say() { printf '\n== %s\n' "$*"; }
die() {
    printf 'bench/supervise: %s\n' "$*" >&2
    exit 1
}
# shellcheck source=bench/common/lib.sh
source bench/common/lib.sh

# want SECTION: whether ONLY (empty: all; else a comma list of sidecar, backup) asks for it.
want() { [[ -z "$ONLY" || ",$ONLY," == *",$1,"* ]]; }
want sidecar || want backup || die "ONLY=$ONLY: expected sidecar, backup or both"

if [[ -z "${SKIP_DEPS:-}" ]]; then
    scripts/install-deps.sh --bench
fi
targets=()
if want sidecar; then
    command -v wrk >/dev/null || die "wrk is missing (scripts/install-deps.sh --bench)"
    command -v supervisord >/dev/null || die "supervisord is missing (scripts/install-deps.sh --bench)"
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    [[ -x "$NGINX" ]] || die "nginx is missing (scripts/install-deps.sh --bench)"
    targets+=(aviary restart_probe)
fi
if want backup; then
    for tool in rsync zstd tar python3; do
        command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh --bench)"
    done
    targets+=(backup_bench)
fi
if [[ -z "${SKIP_BUILD:-}" ]]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" --target "${targets[@]}"
fi
if want sidecar; then
    AVIARY=$(realpath "$BUILD/aviary")
    PROBE=$(realpath "$BUILD/bench/supervise/restart_probe")
    [[ -x "$AVIARY" && -x "$PROBE" ]] || die "build aviary and restart_probe first"
fi
if want backup; then
    BACKUP_BENCH=$(realpath "$BUILD/bench/supervise/backup_bench")
    [[ -x "$BACKUP_BENCH" ]] || die "build backup_bench first"
fi

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

# median VALUES...: the median of the rounds' values; verdict EXPR: MET when awk finds EXPR true.
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
verdict() { awk "BEGIN {exit !($1)}" && echo MET || echo "NOT MET"; }

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
if want sidecar; then
    echo "aviary:      $AVIARY (commit $(git rev-parse --short HEAD))"
    echo "supervisord: $(supervisord --version)"
    echo "nginx:       $("$NGINX" -v 2>&1 | sed 's/.*version: //')"
fi
if want backup; then
    echo "backup:      $BACKUP_BENCH (commit $(git rev-parse --short HEAD))"
    echo "rsync:       $(rsync --version | head -1)"
    echo "zstd:        $(zstd --version)"
    echo "tar:         $(tar --version | head -1)"
    echo "temp dir:    $TMP ($(stat -f -c %T "$TMP"), $(df -h --output=avail "$TMP" | tail -1 | tr -d ' ') free)"
    echo "memory:      $(awk '/^MemTotal:/ {printf "%.1f GB", $2 / 1048576}' /proc/meminfo)"
fi
echo "load avg:    $(cut -d' ' -f1-3 /proc/loadavg)"

# --- 5. backup: a function, run alone with ONLY=backup, else after the other sections ----------
secs_between() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }  # T0 T1: T1 - T0
timed() {  # timed VAR COMMAND...: runs COMMAND; its wall time in seconds into VAR
    local -n into=$1
    shift
    local t0 t1
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    # shellcheck disable=SC2034 # into is the caller's variable
    into=$(secs_between "$t0" "$t1")
}
tar_zstd() { tar -C "$1" -cf - . | zstd -1 -T0 -q -o "$2"; }  # tar_zstd SRC FILE
untar_zstd() { zstd -dcq "$1" | tar -C "$2" -xf -; }          # untar_zstd FILE DST
mbps() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.1f", (s > 0 ? b / 1048576 / s : 0)}'; }
sum() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a + b}'; }
secs() { awk -v s="$1" 'BEGIN {printf "%.3f", s}'; }
result_of() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }  # result_of KEY "RESULT k=v ..."

# make_tree DIR MB: the data dir, the same every run (seed 14): files of 16-256 KiB, 32 to a
# directory DIR/dNN/eNN, each half random bytes and half a repeated line, MB MB in all.
make_tree() {
    python3 - "$1" "$2" <<'PY'
import os, random, sys
root, total = sys.argv[1], int(sys.argv[2]) << 20
rng = random.Random(14)
line = b"block 0000000000 hash 00000000000000000000000000000000 state ok\n"
written = n = 0
while written < total and n < 10_000_000:
    d = os.path.join(root, "d%02d" % (n // 512 % 100), "e%02d" % (n // 32 % 16))
    if n % 32 == 0:
        os.makedirs(d, exist_ok=True)
    size = min(rng.randint(16 << 10, 256 << 10), total - written)
    half = size // 2
    body = rng.randbytes(half) + (line * (size // len(line) + 1))[: size - half]
    with open(os.path.join(d, "f%07d.dat" % n), "wb") as f:
        f.write(body)
    written += size
    n += 1
PY
}

declare -A B BS
backup_section() {
    say "backup: a ${BACKUP_MB} MB data dir of 16-256 KiB files, $BACKUP_ROUNDS rounds (medians)"
    local src=$TMP/backup-src avail_mb t0 t1 bytes files dirs settle
    avail_mb=$(df -m --output=avail "$TMP" | tail -1 | tr -d ' ')
    ((avail_mb > 7 * BACKUP_MB)) || die "backup: $TMP has $avail_mb MB free, needs $((7 * BACKUP_MB))"
    # ext4 without a journal skips inodes freed in the last dirty_expire_centisecs when it
    # allocates one, reading each one's table block to know (ialloc.c, recently_deleted()): a
    # copy made just after a tree was removed spends seconds of system time there. So nothing is
    # removed within a round, and a round's copies are removed that long before the next round.
    settle=0
    local dev
    dev=$(basename "$(df --output=source "$TMP" | tail -1)")
    if [[ -d /proc/fs/ext4/$dev ]] && ! compgen -G "/proc/fs/jbd2/$dev-*" >/dev/null; then
        settle=$(($(cat /proc/sys/vm/dirty_expire_centisecs) / 100 + 1))
        echo "$TMP is on ext4 without a journal ($dev): ${settle} s between rounds"
    fi
    t0=$(date +%s.%N)
    make_tree "$src" "$BACKUP_MB"
    sync
    t1=$(date +%s.%N)
    bytes=$(find "$src" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
    files=$(find "$src" -type f | wc -l)
    dirs=$(find "$src" -type d | wc -l)
    echo "data dir: $files files, $dirs directories, $bytes bytes (made in $(secs_between "$t0" "$t1") s)"

    local round step s f line dst same=unchecked same_z=unchecked
    for ((round = 1; round <= BACKUP_ROUNDS; round++)); do
        dst=$TMP/backup-round
        mkdir -p "$dst"
        # The three peers in turn, the first one rotating from round to round; a `sync` (not
        # timed) before each timed step, so that none inherits another's dirty pages.
        for ((step = 0; step < 3; step++)); do
            case $(((round - 1 + step) % 3)) in
            0) # rsync and its flush; then --link-dest against that copy (the unchanged backup's peer)
                mkdir -p "$dst/rsync" "$dst/linkdest" && sync
                timed s rsync -a "$src" "$dst/rsync/"
                timed f sync -f "$dst"
                BS[rsync]+="$s " BS[rsync_sync]+="$(sum "$s" "$f") "
                echo "round $round rsync -a:             $s s, then sync -f $f s"
                sync
                timed s rsync -a --link-dest="$dst/rsync" "$src" "$dst/linkdest/"
                timed f sync -f "$dst"
                BS[linkdest]+="$s " BS[linkdest_sync]+="$(sum "$s" "$f") "
                echo "round $round rsync -a --link-dest: $s s, then sync -f $f s"
                ;;
            1) # tar | zstd, and back into an empty dir
                mkdir -p "$dst/untar" && sync
                timed s tar_zstd "$src" "$dst/x.tar.zst"
                timed f sync -f "$dst"
                BS[tar]+="$s " BS[tar_sync]+="$(sum "$s" "$f") "
                echo "round $round tar | zstd -1 -T0:    $s s, then sync -f $f s ($(stat -c %s "$dst/x.tar.zst") bytes)"
                sync
                timed s untar_zstd "$dst/x.tar.zst" "$dst/untar"
                timed f sync -f "$dst"
                BS[untar]+="$s " BS[untar_sync]+="$(sum "$s" "$f") "
                echo "round $round zstd -dc | tar -x:    $s s, then sync -f $f s"
                ;;
            2) # aviary: full backup, unchanged backup, restore of the first (each ends with syncfs)
                sync
                line=$("$BACKUP_BENCH" "$src" "$dst/target" "$dst/restore" | tee "$TMP/backup_bench-$round.txt" |
                    sed -n 's/^RESULT //p') || true
                [[ -n "$line" ]] || die "backup_bench failed: $(cat "$TMP/backup_bench-$round.txt")"
                [[ $(result_of files "$line") == "$files" && $(result_of bytes "$line") == "$bytes" ]] ||
                    die "backup_bench saw another tree: $line"
                BS[full]+="$(result_of full_s "$line") "
                BS[unchanged]+="$(result_of unchanged_s "$line") "
                BS[restore]+="$(result_of restore_s "$line") "
                echo "round $round aviary: full $(result_of full_s "$line") s, unchanged $(result_of unchanged_s "$line") s" \
                    "($(result_of linked "$line") hard-linked), restore $(result_of restore_s "$line") s"
                if ((round == 1)); then # not timed: the restored tree is the data dir's, byte for byte
                    diff -r "$src" "$dst/restore" >/dev/null && same=yes || same=NO
                fi
                # aviary's streamed form (backup.format: tar.zst): tar | zstd's counterpart
                sync
                line=$("$BACKUP_BENCH" "$src" "$dst/target_z" "$dst/restore_z" tar.zst |
                    tee "$TMP/backup_bench_z-$round.txt" | sed -n 's/^RESULT //p') || true
                [[ -n "$line" ]] || die "backup_bench tar.zst failed: $(cat "$TMP/backup_bench_z-$round.txt")"
                BS[zfull]+="$(result_of full_s "$line") "
                BS[zrestore]+="$(result_of restore_s "$line") "
                echo "round $round aviary tar.zst: backup $(result_of full_s "$line") s, restore $(result_of restore_s "$line") s"
                if ((round == 1)); then
                    diff -r "$src" "$dst/restore_z" >/dev/null && same_z=yes || same_z=NO
                fi
                ;;
            esac
        done
        rm -rf "$dst"
        if ((round < BACKUP_ROUNDS && settle > 0)); then
            sync
            sleep "$settle"
        fi
    done
    rm -rf "$src"
    local k
    for k in "${!BS[@]}"; do
        # shellcheck disable=SC2086 # word splitting intended: the rounds' values
        B[$k]=$(median ${BS[$k]})
    done

    say "backup results: $files files, $(mbps "$bytes" 1) MB; medians of $BACKUP_ROUNDS rounds (load average now $(cut -d' ' -f1-3 /proc/loadavg))"
    # Columns: the copy alone, and the copy then `sync -f` (aviary's own calls end with syncfs:
    # they have only the second).
    printf '%-44s %9s %8s %13s %8s\n' "" "copy s" "MB/s" "copy+flush s" "MB/s"
    local row label plain synced
    for row in "rsync -a:rsync:rsync_sync" "rsync -a --link-dest (nothing changed):linkdest:linkdest_sync" \
        "tar | zstd -1 -T0:tar:tar_sync" "zstd -dc | tar -x (restore):untar:untar_sync" \
        "aviary backup, full::full" "aviary backup, nothing changed (hard links)::unchanged" \
        "aviary restore::restore" "aviary backup, tar.zst (checked)::zfull" \
        "aviary restore, tar.zst (streamed)::zrestore"; do
        IFS=: read -r label plain synced <<<"$row"
        printf '%-44s %9s %8s %13s %8s\n' "$label" "${plain:+$(secs "${B[$plain]}")}" \
            "${plain:+$(mbps "$bytes" "${B[$plain]}")}" "$(secs "${B[$synced]}")" "$(mbps "$bytes" "${B[$synced]}")"
    done
    echo "aviary's restore identical to the data dir (diff -r, round 1): $same"
    echo "aviary's tar.zst restore identical to the data dir (diff -r, round 1): $same_z"

    say "backup goals: aviary's time / rsync's time <= 1.2"
    local what base ratio
    for what in "backup:full" "restore:restore"; do
        for base in rsync rsync_sync; do
            ratio=$(awk -v a="${B[${what#*:}]}" -v r="${B[$base]}" 'BEGIN {printf "%.2f", a / r}')
            printf 'aviary %-7s / %-10s %5sx -> %s\n' "${what%%:*}" "${base/_sync/+sync}" "$ratio" \
                "$(verdict "$ratio <= 1.2")"
        done
    done
    ratio=$(awk -v a="${B[unchanged]}" -v r="${B[linkdest_sync]}" 'BEGIN {printf "%.2f", a / r}')
    echo "aviary unchanged backup / rsync --link-dest+sync: ${ratio}x (no goal)"
    for what in "zfull:tar_sync:tar.zst backup / tar | zstd + sync (aviary also reads it back)" \
        "zrestore:untar_sync:tar.zst restore / zstd -dc | tar -x + sync (sha256 checked)"; do
        IFS=: read -r k base label <<<"$what"
        ratio=$(awk -v a="${B[$k]}" -v r="${B[$base]}" 'BEGIN {printf "%.2f", a / r}')
        echo "aviary $label: ${ratio}x (no goal)"
    done
}

if ! want sidecar; then
    backup_section
    exit 0
fi

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
nginx_www "$TMP"
upstream=$(free_port)
nginx_conf "$TMP" upstream "$upstream" "root $TMP/www; location = /ok { default_type text/plain; }"
"$NGINX" -p "$TMP" -c "$TMP/upstream.conf" 2>"$TMP/upstream.stderr" &
started+=("$!")
wait_for 10 curl -fsS "http://127.0.0.1:$upstream/ok" || die "the upstream nginx does not answer"

# start_front NAME LOCATION: an nginx proxy_pass front to the upstream, with upstream
# keep-alive; sets FRONT_PORT and FRONT_WORKER.
start_front() {
    FRONT_PORT=$(free_port)
    nginx_conf "$TMP" "$1" "$FRONT_PORT" "location / { $2 }" \
        "upstream up { server 127.0.0.1:$upstream; keepalive 32; }"
    "$NGINX" -p "$TMP" -c "$TMP/$1.conf" 2>"$TMP/$1.stderr" &
    started+=("$!")
    wait_for 10 curl -fsS "http://127.0.0.1:$FRONT_PORT/ok" || die "the nginx proxy $1 does not answer"
    FRONT_WORKER=$(pgrep -P "$!" | head -1)
    [[ -n "$FRONT_WORKER" ]] || die "the nginx proxy $1 has no worker process"
}
bare='proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";'
# What aviary's proxy adds (docs/supervise.md, "The gated proxy"): the client's address appended
# to X-Forwarded-For, the scheme, the client's Host, and this hop in Via both ways.
forwarding="$bare proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme; proxy_set_header X-Forwarded-Host \$http_host;
    proxy_set_header Via \"1.1 nginx\"; add_header Via \"1.1 nginx\";"
start_front front "$forwarding"
front=$FRONT_PORT
front_worker=$FRONT_WORKER
start_front front-twin "$forwarding"
front_twin=$FRONT_PORT
front_twin_worker=$FRONT_WORKER

proxy=$(free_port)
dir=$TMP/proxy-aviary
mkdir -p "$dir"
"$AVIARY" supervise --chain none --proxy "127.0.0.1:$proxy" \
    --upstream "http://127.0.0.1:$upstream" --control 127.0.0.1:0 --state-dir "$dir/state" \
    -- sleep 3600 >"$dir/out" 2>"$dir/err" &
started+=("$!")
proxy_pid=$!
wait_for 20 curl -fsS "http://127.0.0.1:$proxy/ok" || die "aviary's proxy does not answer: $(cat "$dir/err")"

# p50 in microseconds from wrk's --latency table.
wrk_p50_us() {
    awk '$1 == "50%" {v=$2; u=v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v);
         if (u == "us") print v; else if (u == "ms") print v * 1000; else if (u == "s") print v * 1e6}' "$1"
}
wrk_rps() { awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$1"; }
wrk_requests() { awk '/ requests in / {print $1}' "$1"; }
# cpu_ticks PID: the user + system clock ticks of all the process's threads so far.
cpu_ticks() { cat /proc/"$1"/task/*/stat | awk '{t += $14 + $15} END {print t}'; }
tick_us=$(awk -v hz="$(getconf CLK_TCK)" 'BEGIN {print 1e6 / hz}')
declare -A PIDS=([aviary]=$proxy_pid [nginx]=$front_worker [nginx-twin]=$front_twin_worker)
declare -A PORTS=([direct]=$upstream [aviary]=$proxy [nginx]=$front [nginx-twin]=$front_twin)
# The six orders of the three proxies, one per round in turn.
ORDERS=("aviary nginx nginx-twin" "nginx nginx-twin aviary" "nginx-twin aviary nginx"
    "aviary nginx-twin nginx" "nginx aviary nginx-twin" "nginx-twin nginx aviary")
# PROXY_ROUNDS rounds of direct, then the proxies, so that each sees the same drift of the
# machine; the proxies take each order in turn, as whichever runs right after another may find
# the machine in a different state. Each figure is the median of its rounds. Whichever proxy
# ran right after the direct run read 5-8 % lower than the other in two 15-round runs
# (2026-12-07): so each has that place in a third of the rounds, and every measured run follows
# PROXY_WARMUP seconds of the same load on the same target, which is not counted.
declare -A P50S RPSS CPUS
for ((round = 1; round <= PROXY_ROUNDS; round++)); do
    read -r -a order <<<"${ORDERS[(round - 1) % 6]}"
    for c in 1 32; do
        for name in direct "${order[@]}"; do
            port=${PORTS[$name]}
            out=$TMP/wrk-$name-c$c-r$round.txt
            measured=${PIDS[$name]:-}  # the proxy whose CPU time is read; none for direct
            if ((PROXY_WARMUP > 0)); then
                wrk -t1 -c"$c" -d"${PROXY_WARMUP}s" "http://127.0.0.1:$port/ok" >/dev/null 2>&1 || true
            fi
            if [[ -n "$measured" ]]; then
                ticks=$(cpu_ticks "$measured")
            fi
            wrk -t1 -c"$c" -d"${PROXY_SECONDS}s" --latency "http://127.0.0.1:$port/ok" >"$out" 2>&1 || true
            p50=$(wrk_p50_us "$out")
            rps=$(wrk_rps "$out")
            P50S[$name/$c]+="${p50:-0} "
            RPSS[$name/$c]+="${rps:-0} "
            cpu=
            if [[ -n "$measured" ]]; then
                cpu=$(awk -v t0="$ticks" -v t1="$(cpu_ticks "$measured")" -v us="$tick_us" -v n="$(wrk_requests "$out")" \
                    'BEGIN {if (n > 0) printf "%.2f", (t1 - t0) * us / n; else print 0}')
                CPUS[$name/$c]+="$cpu "
                cpu=", CPU $cpu us/request"
            fi
            echo "round $round, c=$c $name: $rps r/s, p50 $p50 us$cpu"
        done
    done
done
# per_round A B: each round's A over its B (lists of the rounds' values, in order).
per_round() {
    # shellcheck disable=SC2086 # word splitting intended: the rounds' values
    paste -d' ' <(printf '%s\n' $1) <(printf '%s\n' $2) | awk '$2 > 0 {printf "%.4f\n", $1 / $2}'
}
# before_in ORDER_INDEX A B: true when proxy A runs before proxy B in ORDERS[ORDER_INDEX].
before_in() {
    local line=" ${ORDERS[$1]} "
    local head="${line%% "$2" *} "
    [[ $head != *" $3 "* ]]
}
for c in 1 32; do
    for name in direct aviary nginx nginx-twin; do
        # shellcheck disable=SC2086 # word splitting intended: the rounds' values
        R[p50/$name/$c]=$(median ${P50S[$name/$c]})
        # shellcheck disable=SC2086
        R[rps/$name/$c]=$(median ${RPSS[$name/$c]})
    done
    for name in aviary nginx nginx-twin; do
        # What the proxy adds to the direct p50, in us.
        R[added/$name/$c]=$(awk -v a="${R[p50/$name/$c]}" -v d="${R[p50/direct/$c]}" 'BEGIN {print a - d}')
        # shellcheck disable=SC2046 # word splitting intended: one ratio per round
        R[ratio/$name/$c]=$(median $(per_round "${RPSS[$name/$c]}" "${RPSS[direct/$c]}"))
        # shellcheck disable=SC2086
        R[cpu/$name/$c]=$(printf '%.1f' "$(median ${CPUS[$name/$c]})")
    done
    for peer in nginx nginx-twin; do
        R[cpu_ahead/$peer/$c]=$(per_round "${CPUS[$peer/$c]}" "${CPUS[aviary/$c]}" | awk '$1 >= 1 {n++} END {print n + 0}')
    done
    # Each pair round by round: aviary against each nginx, and the control, the twin against
    # nginx (two identical programs).
    for pair in "aviary nginx" "aviary nginx-twin" "nginx-twin nginx"; do
        read -r one other <<<"$pair"
        vs_rounds=$(per_round "${RPSS[$one/$c]}" "${RPSS[$other/$c]}")  # one line per round
        # shellcheck disable=SC2086 # word splitting intended: one ratio per round
        R[vs/$one/$other/$c]=$(median $vs_rounds)
        R[ahead/$one/$other/$c]=$(awk '$1 >= 1 {n++} END {print n + 0}' <<<"$vs_rounds")
        # The same ratio split by whether the one ran before the other or after it: how much
        # the order weighed in this run.
        before=() after=()
        round=0
        while read -r ratio; do
            if before_in $((round++ % 6)) "$one" "$other"; then
                before+=("$ratio")
            else
                after+=("$ratio")
            fi
        done <<<"$vs_rounds"
        R[vs_before/$one/$other/$c]=$(median "${before[@]}")
        R[vs_after/$one/$other/$c]=$(median "${after[@]}")
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
printf '%-26s %11s %11s %11s %11s %12s %12s %12s\n' "proxy (wrk -t1, medians)" "direct r/s" "aviary r/s" \
    "nginx r/s" "twin r/s" "aviary +p50" "nginx +p50" "twin +p50"
for c in 1 32; do
    adds=()
    for name in aviary nginx nginx-twin; do
        adds+=("$(printf '%.0f us' "${R[added/$name/$c]}")")
    done
    printf '%-26s %11s %11s %11s %11s %12s %12s %12s\n' "c=$c" "${R[rps/direct/$c]}" "${R[rps/aviary/$c]}" \
        "${R[rps/nginx/$c]}" "${R[rps/nginx-twin/$c]}" "${adds[@]}"
done
printf '%-26s %11s %11s %11s\n' "CPU per proxied request" "aviary" "nginx" "twin"
for c in 1 32; do
    printf '%-26s %11s %11s %11s\n' "c=$c (user+sys, medians)" "${R[cpu/aviary/$c]} us" "${R[cpu/nginx/$c]} us" \
        "${R[cpu/nginx-twin/$c]} us"
done
echo "(nginx: proxy_pass adding the forwarding headers aviary adds; twin: the same nginx again, the control)"

say "goals"
echo "restart p50 <= 10 ms: ${R[rs_p50/aviary]} ms -> $(verdict "${R[rs_p50/aviary]} <= 10")"
ratio=$(awk -v a="${R[relay_lps/aviary]}" -v s="${R[relay_lps/sv]}" 'BEGIN {printf "%.2f", a / s}')
echo "log relay >= 1.5 x supervisord: ${ratio}x -> $(verdict "$ratio >= 1.5")"
echo "RSS <= 10 MB: ${R[rss_mb/aviary]} MB -> $(verdict "${R[rss_mb/aviary]} <= 10")"
# vs_line C ONE OTHER: ONE against OTHER round by round.
vs_line() {
    local key=$2/$3/$1
    awk -v m="${R[vs/$key]}" -v n="${R[ahead/$key]}" -v r="$PROXY_ROUNDS" -v b="${R[vs_before/$key]}" \
        -v a="${R[vs_after/$key]}" -v o="$2" -v p="$3" \
        'BEGIN {printf "%s/%s by round: median %.3f, %s ahead in %d of %d; %.3f in the rounds %s ran before %s, %.3f in the others", o, p, m, o, n, r, b, o, p, a}'
}
for c in 1 32; do
    add_a=${R[added/aviary/$c]}
    add_n=${R[added/nginx/$c]}
    echo "c=$c proxy added p50 <= 1.5 x nginx's: ${add_a} us vs ${add_n} us -> $(verdict "$add_a <= 1.5 * $add_n")"
    ra=$(awk -v r="${R[ratio/aviary/$c]}" 'BEGIN {printf "%.3f", r}')
    rn=$(awk -v r="${R[ratio/nginx/$c]}" 'BEGIN {printf "%.3f", r}')
    rt=$(awk -v r="${R[ratio/nginx-twin/$c]}" 'BEGIN {printf "%.3f", r}')
    echo "c=$c proxied/direct throughput >= nginx's: $ra vs $rn -> $(verdict "$ra >= $rn") ($(vs_line "$c" aviary nginx))"
    echo "c=$c the control, the same nginx again judged the same way: $rt vs $rn -> $(verdict "$rt >= $rn")" \
        "($(vs_line "$c" nginx-twin nginx))"
    echo "c=$c aviary against the twin: $ra vs $rt ($(vs_line "$c" aviary nginx-twin))"
    echo "c=$c CPU per proxied request, beside it: aviary ${R[cpu/aviary/$c]} us, nginx ${R[cpu/nginx/$c]} us," \
        "nginx-twin ${R[cpu/nginx-twin/$c]} us (aviary's the lower in ${R[cpu_ahead/nginx/$c]} and" \
        "${R[cpu_ahead/nginx-twin/$c]} of $PROXY_ROUNDS rounds)"
done
echo "(all programs shared the same $(nproc) cores: wrk, the proxies and the upstream compete for CPU)"

if want backup; then
    backup_section
fi
