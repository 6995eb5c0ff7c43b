//! The guest's whole userland, as an initramfs: Debian's busybox-static, the kernel's
//! wireguard.ko, virtio modules and their dependencies, the host's own `wg` and `iperf3` with the
//! shared libraries `ldd` names, and `/init`, which loads the modules, brings up the network and
//! then serves the command channel (see `channel.rs`) on a virtio-serial port.

use std::path::Path;
use std::process::Command;

use super::cpio::Cpio;
use super::package::{load_order, KernelPackage, GUEST_MODULES};

/// Busybox from Debian's busybox-static (a static binary: it needs no library in the guest).
const BUSYBOX: &str = "/bin/busybox";

/// The name of the virtio-serial port that carries the command channel (qemu's
/// `virtserialport,name=...`; the guest finds it in /sys/class/virtio-ports/*/name).
pub const CHANNEL_PORT_NAME: &str = "wg-pkcs11-tests.channel";

/// Host programs copied into the guest with their libraries.
const HOST_PROGRAMS: &[&str] = &["/usr/bin/wg", "/usr/bin/iperf3"];

/// The guest's network: its virtio NIC's address on the link to the host side's bridge.
pub struct GuestNetwork {
    /// CIDR, e.g. `10.77.0.2/24`.
    pub address: String,
}

/// Writes the initramfs for `kernel` to `path`.
pub fn build(kernel: &KernelPackage, network: &GuestNetwork, path: &Path) {
    let mut cpio = Cpio::new();
    for dir in [
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "var/run/wireguard",
        "sbin",
        "usr/bin",
    ] {
        cpio.add_directory(dir);
    }
    // The kernel opens /dev/console for init before anything is mounted.
    cpio.add_char_device("/dev/console", 5, 1, 0o600);
    cpio.add_file("/bin/busybox", read(Path::new(BUSYBOX)), 0o755);
    cpio.add_symlink("/bin/sh", "busybox");

    let modules = load_order(&kernel.modules_dep(), GUEST_MODULES);
    for module in &modules {
        let file = kernel.dir.join(module);
        cpio.add_file(&format!("/modules/{module}"), read(&file), 0o644);
    }

    for program in HOST_PROGRAMS {
        add_with_libraries(&mut cpio, Path::new(program));
    }

    cpio.add_file("/init", init_script(&modules, network).into_bytes(), 0o755);
    std::fs::write(path, cpio.to_bytes())
        .unwrap_or_else(|e| panic!("cannot write the initramfs {}: {e}", path.display()));
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} for the kernel VM's initramfs: {e} (scripts/install-deps installs \
             busybox-static, wireguard-tools and iperf3)",
            path.display()
        )
    })
}

/// Adds `program` at the same path, and every library `ldd` resolves for it (the dynamic loader
/// included) at the path `ldd` names, so the guest's loader finds them where the host's does.
pub fn add_with_libraries(cpio: &mut Cpio, program: &Path) {
    let name = program.display().to_string();
    cpio.add_file(&name, read(program), 0o755);
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ldd {name}: {e}"));
    assert!(
        out.status.success(),
        "ldd {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for library in parse_ldd(&String::from_utf8_lossy(&out.stdout)) {
        if !cpio.contains(&library) {
            // std::fs::read follows symlinks: the guest gets the library's contents at the path
            // the loader asks for.
            cpio.add_file(&library, read(Path::new(&library)), 0o755);
        }
    }
}

/// The absolute paths in `ldd` output (`libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`,
/// `/lib64/ld-linux-x86-64.so.2 (0x...)`); the vDSO has none.
fn parse_ldd(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

/// `/init`: PID 1 of the guest. Anything it reports before the command channel is up goes to the
/// console (ttyS0), which the host shows when the VM fails.
fn init_script(modules: &[String], network: &GuestNetwork) -> String {
    let insmods: String = modules
        .iter()
        .map(|m| {
            // wireguard's debug messages (handshakes sent and received, packets dropped and why)
            // on: the console then shows a refusal by the kernel. insmod does not read
            // `wireguard.dyndbg` from the kernel's command line as modprobe does.
            let params = if m.ends_with("/wireguard.ko") {
                " dyndbg=+p"
            } else {
                ""
            };
            format!("insmod /modules/{m}{params} || fail 'insmod {m}'\n")
        })
        .collect();
    format!(
        r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox --install -s /bin
fail() {{ echo "@@INIT-FAILED: $*" > /dev/console; sleep 1; poweroff -f; }}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/wireguard
{insmods}
ip link set lo up || fail 'lo up'
ip link set eth0 up || fail 'eth0 missing (virtio_net did not find the NIC)'
ip address add {address} dev eth0 || fail 'address'
# The command channel: a virtio-serial port (opened once: a port allows one opener).
port=
for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = {port_name} ] && port=/dev/${{p##*/}}
done
[ -n "$port" ] || fail 'no virtio-serial port named {port_name}'
exec 3<>"$port" 1>&3 2>/dev/console
echo "@@READY $(uname -r)"
while IFS= read -r line <&3; do
    case "$line" in
        "@@CMD "*) ;;
        *) echo "$(cut -d' ' -f1 /proc/uptime) ignored: $line" >> /tmp/channel.log; continue ;;
    esac
    rest=${{line#@@CMD }}
    id=${{rest%% *}}
    echo "$(cut -d' ' -f1 /proc/uptime) $id start" >> /tmp/channel.log
    printf '%s\n' "${{rest#* }}" | base64 -d > /tmp/cmd.sh
    sh /tmp/cmd.sh </dev/null >/tmp/cmd.out 2>&1
    rc=$?
    echo "$(cut -d' ' -f1 /proc/uptime) $id exit $rc" >> /tmp/channel.log
    echo "@@BEGIN $id"
    base64 < /tmp/cmd.out
    echo "@@END $id $rc"
done
fail 'command channel closed'
"#,
        address = network.address,
        port_name = CHANNEL_PORT_NAME
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_ldd_paths_are_found_and_the_vdso_is_skipped() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f5c)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f5c)\n";
        assert_eq!(
            parse_ldd(text),
            [
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }
}
