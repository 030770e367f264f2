#!/usr/bin/env bash
# scripts/sidecar-layout.sh: regenerates cmake/sidecar-layout.ld, the list of functions
# `aviary supervise` runs, which the Release link places together at the start of .text.
#
#   scripts/sidecar-layout.sh [RELEASE_BINARY]    (default build/aviary, from `make build`)
#
# Builds build-layout/ and needs python3 and curl.
#
# Why: a sidecar runs beside every node, so its resident memory is paid once per node. The
# kernel maps file pages around each page fault (fault-around, 64 KB), so a process that runs
# a few hundred KB of code scattered over the binary's 12 MB of text ends up with megabytes of
# it resident. With the sidecar's functions in one run of pages it keeps under 10 MB
# (docs/architecture.md, "The sidecar's memory"; bench/RESULTS.md).
#
# How: builds aviary once more with -finstrument-functions (build-layout/, Release flags) and a
# small hook that records each function entered; runs that binary as a sidecar through what a
# sidecar does (start a sim node, read its readiness, relay its lines, answer the control API,
# proxy requests, maintenance and resume, a reload, a restart after kill -9, stop); and writes
# every function that ran and that the Release binary has (out of line, or as GCC's clones of
# it: .constprop, .isra, .part) as the input section -ffunction-sections gives it,
# .text.<symbol> (or .text.unlikely.<symbol>). A stale list costs memory, never correctness:
# a name that no longer exists matches nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=build-layout
RELEASE=$(realpath "${1:-build/aviary}")
OUT=$ROOT/cmake/sidecar-layout.ld
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# --- the instrumented build -----------------------------------------------------------------
mkdir -p "$BUILD"
cat >"$BUILD/layout_hook.c" <<'HOOK'
/* Records the functions a process enters; at exit, an `aviary supervise` process appends
   their offsets in their file to $AVIARY_LAYOUT_OUT. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define SLOTS (1u << 20)
static void* seen[SLOTS];
__attribute__((no_instrument_function)) void __cyg_profile_func_enter(void* fn, void* site) {
    (void)site;
    uint32_t at = (uint32_t)(((uintptr_t)fn * 0x9E3779B97F4A7C15ull) >> 44);
    for (;;) {
        void* cur = __atomic_load_n(&seen[at], __ATOMIC_RELAXED);
        if (cur == fn) return;
        if (cur == NULL && __atomic_compare_exchange_n(&seen[at], &cur, fn, 0, __ATOMIC_RELAXED,
                                                       __ATOMIC_RELAXED)) return;
        if (cur == fn) return;
        at = (at + 1) & (SLOTS - 1);
    }
}
__attribute__((no_instrument_function)) void __cyg_profile_func_exit(void* fn, void* site) {
    (void)fn;
    (void)site;
}
__attribute__((destructor, no_instrument_function)) static void dump(void) {
    const char* path = getenv("AVIARY_LAYOUT_OUT");
    char cmdline[256] = {0};
    FILE* self = fopen("/proc/self/cmdline", "r");
    if (path == NULL || self == NULL) return;
    size_t n = fread(cmdline, 1, sizeof cmdline - 1, self);
    fclose(self);
    const char* second = memchr(cmdline, 0, n) ? cmdline + strlen(cmdline) + 1 : "";
    if (strcmp(second, "supervise") != 0) return;
    FILE* out = fopen(path, "a");
    if (out == NULL) return;
    for (uint32_t i = 0; i < SLOTS; ++i) {
        Dl_info info;
        if (seen[i] != NULL && dladdr(seen[i], &info) && info.dli_fbase != NULL) {
            fprintf(out, "%s %lx\n", info.dli_fname,
                    (unsigned long)((char*)seen[i] - (char*)info.dli_fbase));
        }
    }
    fclose(out);
}
HOOK
cc -O2 -c "$BUILD/layout_hook.c" -o "$BUILD/layout_hook.o"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DAVIARY_TESTS=OFF -DAVIARY_BENCH=OFF \
    -DCMAKE_CXX_FLAGS=-finstrument-functions -DAVIARY_SIDECAR_LAYOUT=OFF \
    "-DCMAKE_EXE_LINKER_FLAGS=$ROOT/$BUILD/layout_hook.o -ldl" >/dev/null
cmake --build "$BUILD" --target aviary
AVIARY=$(realpath "$BUILD/aviary")
export AVIARY_LAYOUT_OUT=$TMP/entered

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run NAME ARGS...: starts the sidecar; sets $sidecar, $control and $proxy.
run() {
    local name=$1
    shift
    "$AVIARY" supervise --control 127.0.0.1:0 --state-dir "$TMP/$name-state" "$@" \
        >"$TMP/$name.out" 2>"$TMP/$name.err" &
    sidecar=$!
    control=""
    for _ in $(seq 1 300); do
        control=$(grep -o 'control=[0-9.:]*' "$TMP/$name.err" | head -1 | cut -d= -f2) || true
        [[ -n "$control" ]] && break
        sleep 0.1
    done
    [[ -n "$control" ]] || {
        cat "$TMP/$name.err" >&2
        exit 1
    }
    proxy=$(grep -o 'proxy=[0-9.:]*' "$TMP/$name.err" | head -1 | cut -d= -f2) || true
}

ready() {
    for _ in $(seq 1 300); do
        curl -fsS "http://$control/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "sidecar-layout: the sim node did not become ready" >&2
    return 1
}

# --- 1. a sim node behind the proxy ---------------------------------------------------------
port=$(free_port)
run sim --chain sim --proxy 127.0.0.1:0 --upstream "http://127.0.0.1:$port" -- \
    "$AVIARY" sim-node --data-dir "$TMP/node" --version v1.0.0 --port-file "$TMP/node-port" \
    --listen "127.0.0.1:$port" --block-interval 50ms
ready
for path in /v1/status /healthz /v1/nodeos/healthz /v1/is_running /v1/ping "/v1/logs?tail=5" \
    /metrics /v1/nope; do
    curl -sS -o /dev/null "http://$control$path" || true
done
for _ in 1 2 3; do
    curl -sS -o /dev/null "http://$proxy/status" || true
done
curl -sS -o /dev/null -XPOST "http://$control/v1/nodeos/maintenance?sync=true" || true
curl -sS -o /dev/null "http://$proxy/status" || true
curl -sS -o /dev/null -XPOST "http://$control/v1/nodeos/resume?sync=true" || true
ready
curl -sS -o /dev/null -XPOST "http://$control/v1/reload?sync=true" || true
ready
pkill -KILL -f "^$AVIARY sim-node" || true  # the node only: the sidecar's own command line names it too
sleep 1
ready
curl -sS -o /dev/null "http://$proxy/status" || true
kill -TERM "$sidecar"
wait "$sidecar" || true

# --- 2. the relay: a node that writes lines as fast as it can, then exits --------------------
run relay --chain none --proxy "" --restart never -- seq 1 200000
wait "$sidecar" || true
[[ -s "$AVIARY_LAYOUT_OUT" ]] || {
    echo "sidecar-layout: the sidecar recorded no functions" >&2
    exit 1
}

# --- the linker script ------------------------------------------------------------------------
[[ -x "$RELEASE" ]] || {
    echo "sidecar-layout: no Release binary at $RELEASE (make build, or name one)" >&2
    exit 1
}
nm --defined-only "$AVIARY" >"$TMP/symbols"
nm --defined-only "$RELEASE" >"$TMP/release-symbols"
python3 - "$TMP" "$AVIARY" "$OUT" <<'EOF'
import re, sys
tmp, binary, out = sys.argv[1:]
by_address = {}
for line in open(f"{tmp}/symbols"):
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW":
        by_address[int(parts[0], 16)] = parts[2]
names = set()
for line in open(f"{tmp}/entered"):
    path, offset = line.split()
    if path == binary and int(offset, 16) in by_address:
        names.add(by_address[int(offset, 16)])
release = set()
for line in open(f"{tmp}/release-symbols"):
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW":
        release.add(parts[2])
# GCC splits a coroutine into its ramp (the function called, instrumented) and the actor and
# destroyer that run its body, named after the ramp: "...<length><ramp>.Frame.actor".
for name in release | set(by_address.values()):
    coroutine = re.search(r"\d(_Z[^.]*)\.Frame\.(actor|destroy)", name)
    if coroutine and coroutine.group(1) in names:
        names.add(name)
# A Release function is kept when it ran, or when it is a clone of one that ran; not the cold
# parts GCC splits off (.cold, in .text.unlikely: seldom run), nor the static initialisers,
# which the default script already keeps together in .text.startup.
symbols = sorted(n for n in release if (n in names or n.split(".")[0] in names)
                 and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.$]*", n)
                 and not n.endswith(".cold") and not n.startswith("_GLOBAL__sub_I_")
                 and n != "main")
with open(out, "w") as f:
    f.write("/* Generated by scripts/sidecar-layout.sh: the functions `aviary supervise` runs,\n"
            "   placed together before the rest of .text (docs/architecture.md). */\n")
    f.write("SECTIONS\n{\n  .text.sidecar :\n  {\n")
    for name in symbols:
        # GCC puts a function it deems seldom run whole in .text.unlikely.<name>.
        f.write(f"    *(.text.{name} .text.unlikely.{name})\n")
    f.write("  }\n}\nINSERT BEFORE .text;\n")
print(f"sidecar-layout: {len(symbols)} functions -> {out}")
EOF
