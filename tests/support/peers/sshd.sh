#!/bin/bash
# Start a real OpenSSH server on 127.0.0.1:PORT for integration tests, in the foreground
# (the script execs sshd, so the caller's process handle owns it; SIGTERM ends it).
#
# Usage: sshd.sh DIR PORT        (run as root; DIR is created if missing, made absolute)
#
# Files produced in DIR:
#   ssh_host_ed25519_key(.pub)   the server's host key
#   id_ed25519, id_ed25519.pub   the client (user) key; its public half is authorized
#   authorized_keys              used by sshd for every user (root included)
#   known_hosts                  "[127.0.0.1]:PORT ssh-ed25519 ..." pinned to the real host key
#   known_hosts.wrong            the same address with a different (unused) host key
#   sshd_config, sshd.pid        the server config; sshd writes its pid there (removed on exit)
# sshd logs to stderr (-e); "Server listening on 127.0.0.1 port PORT." there means ready.
# Sessions are children of the listener and outlive its SIGTERM until their command ends:
# end them first (e.g. pkill -TERM -P LISTENER_PID) if a test needs a clean slate.
#
# Client command that works (prints "hello", exit 0):
#   ssh -o BatchMode=yes -o ConnectTimeout=3 -o StrictHostKeyChecking=yes \
#       -o UserKnownHostsFile=DIR/known_hosts -o IdentitiesOnly=yes -i DIR/id_ed25519 \
#       -p PORT root@127.0.0.1 -- echo hello
# (add -F /dev/null to keep the caller's ~/.ssh/config out of it). Failures, all exit 255:
#   UserKnownHostsFile=DIR/known_hosts.wrong -> stderr has "WARNING: REMOTE HOST
#     IDENTIFICATION HAS CHANGED!" ... "Host key verification failed."
#   no entry (UserKnownHostsFile=/dev/null) -> "No ED25519 host key is known for
#     [127.0.0.1]:PORT and you have requested strict checking." "Host key verification failed."
#   key not authorized -> "root@127.0.0.1: Permission denied (publickey)."
#   nothing listening -> "ssh: connect to host 127.0.0.1 port PORT: Connection refused"
# The remote command's own exit status is passed through (`-- 'exit 7'` -> 7).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 DIR PORT" >&2
    exit 2
fi
mkdir -p "$1"
dir=$(cd "$1" && pwd)   # absolute: these paths go into sshd_config
port=$2

rm -f "$dir"/ssh_host_ed25519_key* "$dir"/id_ed25519* "$dir"/wrong_host_key*
ssh-keygen -q -t ed25519 -N '' -C aviary-test-host -f "$dir/ssh_host_ed25519_key"
ssh-keygen -q -t ed25519 -N '' -C aviary-test-client -f "$dir/id_ed25519"
ssh-keygen -q -t ed25519 -N '' -C aviary-test-wrong -f "$dir/wrong_host_key"

cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
chmod 600 "$dir/authorized_keys"
hostpub() { cut -d' ' -f1,2 "$1"; }
echo "[127.0.0.1]:$port $(hostpub "$dir/ssh_host_ed25519_key.pub")" >"$dir/known_hosts"
echo "[127.0.0.1]:$port $(hostpub "$dir/wrong_host_key.pub")" >"$dir/known_hosts.wrong"
rm -f "$dir"/wrong_host_key*

cat >"$dir/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
AddressFamily inet
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 100
LogLevel VERBOSE
EOF

# Privilege-separation directory; sshd refuses to start without it
# ("Missing privilege separation directory: /run/sshd").
mkdir -p /run/sshd
chmod 755 /run/sshd

# By absolute path: sshd re-execs itself per connection and refuses otherwise
# ("sshd re-exec requires execution with an absolute path").
exec /usr/sbin/sshd -D -e -f "$dir/sshd_config"
