#!/bin/bash
# Test stand-in for a machine's power: while FLAG exists the "machine" is down (a test's TCP
# listener stops answering); removing it brings the machine back. The ssh command, ipmi_sim's
# chassis hook and snmpd's outlet hook of the reboot tests call this instead of anything real.
#
# Usage: bounce.sh FLAG off|soft|on|cycle|reset|reboot
#   off, soft           down (until `on`)
#   on                  up
#   cycle, reset, reboot  down now, up again a second later (in the background)
set -eu
flag=$1
case "${2:-}" in
    off | soft) touch "$flag" ;;
    on) rm -f "$flag" ;;
    cycle | reset | reboot)
        touch "$flag"
        nohup /bin/bash -c "sleep 1; rm -f '$flag'" </dev/null >/dev/null 2>&1 &
        ;;
    *)
        echo "bounce.sh: unknown power request \"${2:-}\"" >&2
        exit 2
        ;;
esac
