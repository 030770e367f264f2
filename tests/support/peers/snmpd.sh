#!/bin/bash
# Start net-snmp's snmpd on UDP 127.0.0.1:PORT emulating an APC PDU's outlet control column
# (PowerNet-MIB sPDUOutletCtl, .1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.N, INTEGER 1=on 2=off
# 3=reboot) for integration tests, in the foreground (the script execs snmpd; SIGTERM ends
# it). A SET runs HOOK, never anything real.
#
# Usage: snmpd.sh DIR PORT HOOK        (DIR is created if missing; HOOK: an executable path)
#
# Files produced in DIR:
#   community          the random read-write v2c community (no newline); only 127.0.0.1 may use it
#   snmp.conf          CLIENT config (defVersion 2c, defCommunity, persistentDir): point the
#                      net-snmp tools at it with SNMPCONFPATH=DIR so no -c is on a command line
#   snmpd.conf         the agent config (read with -C -c: /etc/snmp is never read)
#   pdu_pass           snmpd `pass` program for the outlet column (-g / -n / -s)
#   outlets/N          the last value SET on outlet N (1..24); starts at 1 (on)
#   pdu_pass.log       one line per pass call
#   snmpd.log, snmpd.pid, persist/ (agent persistent state), persist-client/ (tools' state)
#
# HOOK is called as `HOOK outlet N on|off|reboot` on a SET; if it exits non-zero the SET
# fails with commitFailed and outlets/N keeps its old value. GET returns the last value set
# (3 stays 3 after a reboot; a real APC reads 1 again once the outlet is back on).
#
# Client commands that work (exit 0). snmp.conf says `mibs :`, so OIDs print as "iso.3.6..."
# (-On: ".1.3.6..."; -Oqv: the value alone):
#   SNMPCONFPATH=DIR snmpset -t 1 -r 1 127.0.0.1:PORT .1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.3 i 2
#     -> "iso.3.6.1.4.1.318.1.1.12.3.3.1.1.4.3 = INTEGER: 2"
#   SNMPCONFPATH=DIR snmpget -Oqv 127.0.0.1:PORT .1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.3  -> "2"
#   SNMPCONFPATH=DIR snmpwalk -On 127.0.0.1:PORT .1.3.6.1.4.1.318.1.1.12.3.3.1.1.4
# Failures (exit 1 for no answer, 2 for an error answer):
#   wrong community or nothing listening: no answer; after -t 1 -r 0 (default -t 1 -r 5: 6 s)
#     snmpget: "Timeout: No Response from 127.0.0.1:PORT."  snmpset: same without the "."
#   value not 1-3: "Reason: wrongValue ..."; not INTEGER: "Reason: wrongType ..."; outlet
#   outside 1-24: "Reason: notWritable ..."; HOOK failed: "Reason: commitFailed" -- each after
#   "Error in packet." and before "Failed object: iso.3.6...".
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
*[!A-Za-z0-9_./-]*) echo "$0: DIR must be a plain path (it goes into snmpd.conf)" >&2; exit 2 ;;
esac
if [ ! -x "$hook" ]; then
    echo "$0: HOOK $hook is not executable" >&2
    exit 2
fi
case $hook in /*) ;; *) hook=$(pwd)/$hook ;; esac

community=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
printf '%s' "$community" >"$dir/community"
chmod 600 "$dir/community"
mkdir -p "$dir/outlets"
# cert_indexes pre-made so neither side prints "Created directory: ..." on first use
install -d -m 700 "$dir/persist/cert_indexes" "$dir/persist-client/cert_indexes"
for n in $(seq 1 24); do echo 1 >"$dir/outlets/$n"; done
: >"$dir/pdu_pass.log"

{
    echo '#!/bin/bash'
    printf 'dir=%q\nhook=%q\n' "$dir" "$hook"
    cat <<'EOF'
# snmpd `pass` program: -g OID | -n OID | -s OID TYPE VALUE (see snmpd.conf(5), "pass").
base=.1.3.6.1.4.1.318.1.1.12.3.3.1.1.4
max=24
echo "$*" >>"$dir/pdu_pass.log"
reply() { printf '%s.%s\ninteger\n%s\n' "$base" "$1" "$(cat "$dir/outlets/$1")"; }
index() { # the outlet number if $1 is exactly base.N with 1 <= N <= max
    local n=${1#"$base".}
    [[ $1 == "$base".* && $n =~ ^[0-9]+$ ]] && ((10#$n >= 1 && 10#$n <= max)) && echo $((10#$n))
}
case $1 in
-g)
    if n=$(index "$2"); then reply "$n"; fi
    ;;
-n)
    if [[ $2 == "$base" || $2 != "$base".* ]]; then
        n=1                          # the column itself (or anything before it): first row
    else
        rest=${2#"$base".}
        first=${rest%%.*}
        n=$((10#$first + 1))
    fi
    if ((n <= max)); then reply "$n"; fi
    ;;
-s)
    n=$(index "$2") || { echo not-writable; exit 0; }
    [ "$3" = integer ] || { echo wrong-type; exit 0; }
    case $4 in 1) what=on ;; 2) what=off ;; 3) what=reboot ;; *) echo wrong-value; exit 0 ;; esac
    # HOOK's stdout goes to stderr: any output of ours on a SET is read as an error
    "$hook" outlet "$n" "$what" >&2 || { echo commit-failed; exit 0; }
    echo "$4" >"$dir/outlets/$n"
    ;;
esac
EOF
} >"$dir/pdu_pass"
chmod 755 "$dir/pdu_pass"   # snmpd execs it directly: it must be executable

cat >"$dir/snmpd.conf" <<EOF
agentAddress udp:127.0.0.1:$port
rwcommunity $community 127.0.0.1
pass .1.3.6.1.4.1.318.1.1.12.3.3.1.1.4 $dir/pdu_pass
sysName aviary-test-pdu
EOF

cat >"$dir/snmp.conf" <<EOF
defVersion 2c
defCommunity $community
persistentDir $dir/persist-client
mibs :
EOF
chmod 600 "$dir/snmp.conf"

unset SNMPCONFPATH SNMP_PERSISTENT_FILE
export SNMP_PERSISTENT_DIR=$dir/persist   # agent state (engine boots...) goes here, not /var/lib/snmp
export MIBS=                              # load no MIB modules (Debian ships few: pages of warnings)
# -f: foreground; -C -c: only our config; -I -smux...: no SMUX listener (else 0.0.0.0:199) nor
# DISMAN trigger tables; -Lf: log to a file; -p: pid file. The listening address comes from
# agentAddress only (giving it on the command line too makes snmpd bind it twice and exit).
exec /usr/sbin/snmpd -f -C -c "$dir/snmpd.conf" -I -smux,mteTrigger,mteTriggerConf \
    -Lf "$dir/snmpd.log" -p "$dir/snmpd.pid"
