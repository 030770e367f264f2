#!/bin/bash
# Start OpenIPMI's BMC simulator (ipmi_sim) on UDP 127.0.0.1:PORT for integration tests, in
# the foreground (the script execs ipmi_sim; SIGTERM ends it). Power control runs HOOK, never
# anything real.
#
# Usage: ipmi_sim.sh DIR PORT HOOK     (DIR is created if missing; HOOK: an executable path)
#
# Files produced in DIR:
#   ipmi_user, ipmi_password   the BMC user (admin privilege) and its random password, each
#                              file holding just the value (no newline); ipmitool -f reads it
#   lan.conf                   ipmi_sim config (-c): LAN channel 1, the user, chassis_control
#   sim.emu                    ipmi_sim command file (-f): one BMC MC at IPMB 0x20
#   chassis_control            the script ipmi_sim runs for chassis commands (see below)
#   power_state                "1" (on, the initial state) or "0" (off)
#   chassis_control.log        one line per call ipmi_sim made to chassis_control
#   state/                     ipmi_sim's state dir (-s); -p (no persistence) keeps it empty
#
# Power control: lan.conf's `chassis_control "PROG 0x20"` makes ipmi_sim run (via popen, so
# /bin/sh, synchronously -- the BMC answers nothing while it runs)
#   PROG 0x20 get power          -> must print "power:0" or "power:1"   (chassis power status)
#   PROG 0x20 set power "0"|"1"  (chassis power off / on)
#   PROG 0x20 set reset "1"      (chassis power reset)
#   PROG 0x20 set shutdown "1"   (chassis power soft)
# The generated chassis_control calls HOOK with one word: off | on | reset | soft (other
# requests, e.g. "boot pxe", are passed as the two words). A HOOK exit status other than 0
# makes the BMC answer "Unspecified error" (ipmitool exits 1) and leaves power_state alone.
# `chassis power cycle` is done by ipmi_sim as off + on: HOOK gets "off" before ipmitool
# returns, then ipmi_sim's own 1-second timer sends "on" -- wait for it (up to ~2 s).
#
# Client commands that work (exit 0, ~0.1 s):
#   ipmitool -I lanplus -H 127.0.0.1 -p PORT -U "$(cat DIR/ipmi_user)" -f DIR/ipmi_password \
#       -C 3 chassis power status        -> "Chassis Power is on"
#   ... chassis power cycle|off|on|reset|soft   -> "Chassis Power Control: Cycle" (etc.)
# Always pass -C 3: ipmi_sim has no SHA-256, so -C 17 (ipmitool's documented default) fails
# ("Error in open session response message : invalid authentication algorithm"); with no -C,
# ipmitool's "Get Channel Cipher Suites" goes unanswered, it prints "Unable to Get Channel
# Cipher Suites" and only gets through (with suite 3) after ~10 s of retries.
# Failures (all exit 1): wrong password or user -> "Error: Unable to establish IPMI v2 / RMCP+
# session" at once; nothing listening -> the same text after ~20 s (-R 4 -N 1 defaults), ~2 s
# with -R 1 -N 1; HOOK failed -> "Set Chassis Power Control to Down/Off failed: Unspecified
# error".
set -euo pipefail

if [ $# -ne 3 ]; then
    echo "usage: $0 DIR PORT HOOK" >&2
    exit 2
fi
mkdir -p "$1"
dir=$(cd "$1" && pwd)
port=$2
hook=$3
case $dir in
*[!A-Za-z0-9_./-]*) echo "$0: DIR must be a plain path (it goes into lan.conf)" >&2; exit 2 ;;
esac
if [ ! -x "$hook" ]; then
    echo "$0: HOOK $hook is not executable" >&2
    exit 2
fi
case $hook in /*) ;; *) hook=$(pwd)/$hook ;; esac

user=aviary
password=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')   # 16 chars: the IPMI 1.5 maximum
printf '%s' "$user" >"$dir/ipmi_user"
printf '%s' "$password" >"$dir/ipmi_password"
chmod 600 "$dir/ipmi_password"
echo 1 >"$dir/power_state"
: >"$dir/chassis_control.log"
mkdir -p "$dir/state"

# The hook path and DIR are baked in with printf %q: ipmi_sim runs this through /bin/sh.
{
    echo '#!/bin/bash'
    printf 'dir=%q\nhook=%q\n' "$dir" "$hook"
    cat <<'EOF'
# Called by ipmi_sim: chassis_control MC get PARM... | set PARM VALUE...
echo "$*" >>"$dir/chassis_control.log"
op=$2
shift 2
case $op in
get)
    for parm in "$@"; do
        case $parm in
        power) echo "power:$(cat "$dir/power_state")" ;;
        boot) echo "boot:default" ;;
        *) echo "unsupported: $parm"; exit 1 ;;
        esac
    done
    ;;
set)
    # HOOK's stdout goes to stderr: ipmi_sim reads ours until EOF, a kept-open pipe would hang it
    run() { "$hook" "$@" >&2 || { echo "hook $hook $* failed"; exit 1; }; }
    while [ $# -ge 2 ]; do
        case "$1 $2" in
        "power 0") run off; echo 0 >"$dir/power_state" ;;
        "power 1") run on; echo 1 >"$dir/power_state" ;;
        "reset 1") run reset ;;
        "shutdown 1") run soft; echo 0 >"$dir/power_state" ;;
        *) run "$1" "$2" ;;
        esac
        shift 2
    done
    ;;
*) echo "unsupported: $op"; exit 1 ;;
esac
EOF
} >"$dir/chassis_control"
chmod 755 "$dir/chassis_control"

cat >"$dir/lan.conf" <<EOF
name "aviary"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 $port
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "$dir/chassis_control 0x20"
  user 2 true "$user" "$password" admin 10 md5
EOF

cat >"$dir/sim.emu" <<'EOF'
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02
mc_enable 0x20
EOF

# -n: no console on stdin/stdout (without it ipmi_sim reads commands from stdin);
# -p: persist nothing; -s: state dir inside DIR instead of /var/ipmi_sim. It does not fork.
exec /usr/bin/ipmi_sim -n -p -c "$dir/lan.conf" -f "$dir/sim.emu" -s "$dir/state"
