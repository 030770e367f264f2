#!/usr/bin/env bash
# Installs the Debian bookworm packages aviary builds and tests with, only those missing.
# Safe to run again: it does nothing when everything is present.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --bench  also the benchmark peers (wrk, nginx, Celery + Redis,
#                                    supervisord, zstd and blackbox_exporter), valgrind and
#                                    perf (bench/supervise/proxy_cost.sh counts instructions
#                                    and system calls)
set -euo pipefail

packages=(
    # toolchain
    g++ make cmake ninja-build ccache pkg-config git clang-format curl ca-certificates
    # libraries (Boost from the 1.81 packages only: they conflict with 1.74's -dev)
    libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev libssl-dev
    libyaml-cpp-dev libsqlite3-dev sqlite3 libpq-dev libspdlog-dev libfmt-dev libcli11-dev
    libzstd-dev zstd libre2-dev
    # tests: gtest/gmock, PostgreSQL for the store tests, promtool for /metrics, rsync as the
    # backups' push and pull commands
    googletest libgtest-dev libgmock-dev libbenchmark-dev postgresql prometheus procps rsync
    # machine tasks' tools and the real peers their tests start on loopback: ssh (client and
    # sshd), ipmitool and OpenIPMI's ipmi_sim, net-snmp's tools and snmpd, ping; Chromium for
    # the browser's CORS preflight
    openssh-client openssh-server ipmitool openipmi snmp snmpd iputils-ping chromium
)
if [[ "${1:-}" == "--bench" ]]; then
    packages+=(wrk nginx-light python3-celery python3-redis redis-server supervisor zstd
        prometheus-blackbox-exporter valgrind linux-perf)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: everything is installed"
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
    sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
# The PostgreSQL package would start a cluster service; tests start their own in temp dirs.
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
