//! The guest side of the command channel (kernel_vm/channel.rs), as a POSIX shell script that
//! runs under busybox sh and Debian's dash alike: it finds the virtio-serial port by name,
//! answers `@@READY <uname -r>`, then runs one `@@CMD` at a time.

use super::machine::CHANNEL_PORT_NAME;

/// The script. `$1`, if given, is a log of the commands run (with the guest's uptime).
pub fn script() -> String {
    format!(
        r#"#!/bin/sh
log=${{1:-/tmp/channel.log}}
port=
for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = {CHANNEL_PORT_NAME} ] && port=/dev/${{p##*/}}
done
[ -n "$port" ] || {{ echo "agent: no virtio-serial port named {CHANNEL_PORT_NAME}" >&2; exit 1; }}
exec 3<>"$port" 1>&3
echo "@@READY $(uname -r)"
while IFS= read -r line <&3; do
    case "$line" in
        "@@CMD "*) ;;
        *) echo "$(cut -d' ' -f1 /proc/uptime) ignored: $line" >> "$log"; continue ;;
    esac
    rest=${{line#@@CMD }}
    id=${{rest%% *}}
    echo "$(cut -d' ' -f1 /proc/uptime) $id start" >> "$log"
    printf '%s\n' "${{rest#* }}" | base64 -d > /tmp/agent-cmd.sh
    sh /tmp/agent-cmd.sh </dev/null >/tmp/agent-cmd.out 2>&1
    rc=$?
    echo "$(cut -d' ' -f1 /proc/uptime) $id exit $rc" >> "$log"
    echo "@@BEGIN $id"
    base64 < /tmp/agent-cmd.out
    echo "@@END $id $rc"
done
echo "agent: the command channel closed" >&2
"#
    )
}
