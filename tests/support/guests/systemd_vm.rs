//! A Debian 12 guest with systemd as PID 1 (amd64; KVM when it really works, TCG otherwise):
//!
//! - its root file system made with mmdebstrap (minbase plus systemd, udev, iproute2,
//!   wireguard-tools, opensc, p11-kit, ...) and turned into an ext4 image (`mkfs.ext4 -d`), both
//!   cached (debian.rs); qemu opens the image with `snapshot=on`, so the cached image never
//!   changes;
//! - Debian 12's kernel (linux-image-amd64, from the same cache) with a small initramfs of the
//!   host's busybox-static: it loads the modules (virtio, ext4, tun, veth, wireguard), mounts the
//!   image and hands over to systemd with switch_root;
//! - a second disk, an ext4 image of a directory the test fills (the .deb), at /mnt/test;
//! - the command channel (agent.rs) started by a unit, `test-agent.service`.
//!
//! The guest has no network device; its traffic stays between namespaces inside it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::debian::{self, run, Kernel};
use super::machine::{BootFailure, Launch, Machine};
use crate::kernel_vm::cpio::Cpio;
use crate::kernel_vm::package::{load_order, parse_modules_dep};

/// The root file system's packages (on top of mmdebstrap's minbase).
const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "iproute2",
    "iputils-ping",
    "procps",
    "adduser",
    "wireguard-tools",
    "opensc",
    "p11-kit",
];

/// Loaded by the initramfs before systemd starts (modules.dep adds their dependencies); the
/// root file system has no /lib/modules, so the guest loads nothing later.
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_console",
    "virtio_rng",
    "crc32c_generic",
    "ext4",
    "tun",
    "veth",
    "wireguard",
];

/// The busybox of Debian's busybox-static on the host (amd64, like the guest).
const BUSYBOX: &str = "/bin/busybox";

/// Size of the root image (sparse; the tree is about 250 MB).
const IMAGE_SIZE: &str = "1G";

/// What the guest's root file system gets beyond its packages: the agent's unit, and fewer
/// units that would only slow the boot down.
const ROOTFS_SETUP: &str = "agent-unit-v1";

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const KVM_BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// A working KVM prints within a second; a broken one prints nothing.
const KVM_FIRST_OUTPUT: Duration = Duration::from_secs(10);

/// The root image, from the cache or made into it (from a tree made by mmdebstrap, which goes
/// once the image holds it).
pub fn root_image() -> PathBuf {
    let name = debian::entry_name("amd64", "minbase", PACKAGES, ROOTFS_SETUP);
    let image = debian::cache_dir().join(format!("{name}.ext4"));
    if image.is_file() {
        return image;
    }
    let tree = debian::tree("amd64", "minbase", PACKAGES, ROOTFS_SETUP, prepare_root);
    let partial = tree.with_extension(format!("ext4.partial-{}", std::process::id()));
    run(Command::new("truncate")
        .args(["-s", IMAGE_SIZE])
        .arg(&partial));
    run(Command::new(mkfs_ext4())
        .args(["-q", "-F", "-L", "root", "-E", "root_owner=0:0", "-d"])
        .arg(&tree)
        .arg(&partial));
    std::fs::rename(&partial, &image)
        .unwrap_or_else(|e| panic!("cannot move {} into place: {e}", image.display()));
    let _ = std::fs::remove_dir_all(&tree);
    image
}

fn mkfs_ext4() -> PathBuf {
    ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mkfs.ext4"))
}

/// The agent's unit, a hostname, and units masked that a test guest does not need.
fn prepare_root(root: &Path) {
    let write = |path: &str, text: &str, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        let full = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, text).unwrap();
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write("/usr/local/sbin/test-agent", &super::agent::script(), 0o755);
    write(
        "/etc/systemd/system/test-agent.service",
        "[Unit]\n\
         Description=The test's command channel (virtio-serial)\n\
         After=systemd-journald.service\n\
         [Service]\n\
         ExecStart=/usr/local/sbin/test-agent /run/test-agent.log\n\
         StandardError=journal\n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        0o644,
    );
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    let _ = std::os::unix::fs::symlink(
        "/etc/systemd/system/test-agent.service",
        wants.join("test-agent.service"),
    );
    write("/etc/hostname", "systemd-guest\n", 0o644);
    write(
        "/etc/fstab",
        "/dev/vda / ext4 rw,errors=remount-ro 0 1\n",
        0o644,
    );
    for unit in [
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "e2scrub_all.timer",
        "e2scrub_reap.service",
        "fstrim.timer",
        "dpkg-db-backup.timer",
        "getty@tty1.service",
        "systemd-timesyncd.service",
    ] {
        let _ = std::os::unix::fs::symlink("/dev/null", root.join("etc/systemd/system").join(unit));
    }
}

/// Boots the guest; `data` is the directory the guest sees read-only at /mnt/test.
pub fn boot(data: &Path) -> Machine {
    crate::netns::require_root();
    let kernel = Kernel::get("amd64", MODULES);
    let image = root_image();
    let dir = tempfile::Builder::new()
        .prefix("e2e-systemd-")
        .tempdir()
        .expect("cannot create a temporary directory")
        .keep();
    let initrd = dir.join("initramfs.cpio");
    build_initramfs(&kernel, &initrd);
    let data_image = dir.join("data.ext4");
    run(Command::new("truncate")
        .args(["-s", "64M"])
        .arg(&data_image));
    run(Command::new(mkfs_ext4())
        .args(["-q", "-F", "-L", "testdata", "-d"])
        .arg(data)
        .arg(&data_image));

    let mut failures: Vec<(String, BootFailure)> = Vec::new();
    for accel in accelerators(&kernel) {
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(["-accel", accel, "-m", "1024M", "-smp", "2"])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-no-reboot", "-monitor", "none"])
            .arg("-kernel")
            .arg(kernel.image())
            .arg("-initrd")
            .arg(&initrd)
            .args([
                "-append",
                "console=ttyS0 panic=-1 rdinit=/init loglevel=4 systemd.show_status=1 \
                 systemd.log_color=0",
            ])
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,snapshot=on",
                image.display()
            ))
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,readonly=on",
                data_image.display()
            ))
            .args(["-device", "virtio-rng-pci"]);
        if accel == "tcg" {
            command.args(["-cpu", "max"]);
        }
        let timeout = if accel == "kvm" {
            KVM_BOOT_TIMEOUT
        } else {
            BOOT_TIMEOUT
        };
        match Machine::boot(Launch {
            name: if accel == "kvm" {
                "systemd-kvm"
            } else {
                "systemd-tcg"
            },
            command,
            dir: dir.clone(),
            boot_timeout: timeout,
            first_output: (accel == "kvm").then_some(KVM_FIRST_OUTPUT),
        }) {
            Ok(m) => {
                eprintln!(
                    "systemd guest: Debian's {} with systemd booted under {accel} in {:.1} s \
                     (files in {})",
                    kernel.release,
                    m.boot_time.as_secs_f64(),
                    dir.display()
                );
                return m;
            }
            Err(f) => {
                eprintln!("systemd guest: no boot under {accel}: {}", f.reason);
                if accel == "kvm" {
                    remember_kvm_fails(&kernel);
                }
                failures.push((accel.to_string(), f));
            }
        }
    }
    let report: String = failures
        .iter()
        .map(|(a, f)| format!("--- under {a}: {}\n{}\n", f.reason, f.console))
        .collect();
    panic!("the systemd guest did not boot:\n{report}");
}

/// KVM when /dev/kvm opens (and TCG after it, should KVM not boot the guest), as the kernel VM;
/// `WG_PKCS11_TEST_VM_ACCEL` forces one.
fn accelerators(kernel: &Kernel) -> Vec<&'static str> {
    match std::env::var("WG_PKCS11_TEST_VM_ACCEL").ok().as_deref() {
        Some("tcg") => return vec!["tcg"],
        Some("kvm") => return vec!["kvm"],
        Some(other) => panic!("WG_PKCS11_TEST_VM_ACCEL={other}: expected kvm or tcg"),
        None => {}
    }
    let marker = kvm_failure_marker(kernel);
    if marker.exists() {
        eprintln!(
            "systemd guest: not trying KVM: it did not boot this kernel earlier since this \
             machine started ({} says so; delete it to try again)",
            marker.display()
        );
        return vec!["tcg"];
    }
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if kvm {
        vec!["kvm", "tcg"]
    } else {
        vec!["tcg"]
    }
}

/// Where a failed KVM boot is remembered until the machine reboots (/run is a tmpfs), as the
/// kernel VM does, so later runs go straight to TCG.
fn kvm_failure_marker(kernel: &Kernel) -> PathBuf {
    PathBuf::from(format!(
        "/run/wg-pkcs11-tests/kvm-does-not-boot-systemd-guest-{}",
        kernel.release
    ))
}

fn remember_kvm_fails(kernel: &Kernel) {
    let marker = kvm_failure_marker(kernel);
    let _ = std::fs::create_dir_all(marker.parent().unwrap());
    let _ = std::fs::write(&marker, "qemu -accel kvm did not boot this kernel\n");
}

fn build_initramfs(kernel: &Kernel, path: &Path) {
    let mut cpio = Cpio::new();
    for d in ["proc", "sys", "dev", "newroot", "bin"] {
        cpio.add_directory(d);
    }
    cpio.add_char_device("/dev/console", 5, 1, 0o600);
    let busybox = std::fs::read(BUSYBOX).unwrap_or_else(|e| {
        panic!("cannot read {BUSYBOX}: {e} (scripts/install-deps installs busybox-static)")
    });
    cpio.add_file("/bin/busybox", busybox, 0o755);
    cpio.add_symlink("/bin/sh", "busybox");
    let dep = parse_modules_dep(
        &std::fs::read_to_string(kernel.modules_dir().join("modules.dep"))
            .expect("the amd64 kernel has no modules.dep"),
    );
    let modules = load_order(&dep, MODULES);
    for m in &modules {
        let data = std::fs::read(kernel.modules_dir().join(m))
            .unwrap_or_else(|e| panic!("cannot read the module {m}: {e}"));
        cpio.add_file(&format!("/modules/{m}"), data, 0o644);
    }
    let insmods: String = modules
        .iter()
        .map(|m| format!("insmod /modules/{m} || fail 'insmod {m}'\n"))
        .collect();
    let init = format!(
        r#"#!/bin/sh
/bin/busybox --install -s /bin
fail() {{ echo "@@INIT-FAILED: $*" > /dev/console; sleep 1; poweroff -f; }}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
{insmods}
i=0
while [ ! -b /dev/vda ]; do
    i=$((i + 1)); [ $i -gt 100 ] && fail 'no /dev/vda'; sleep 0.1
done
mount -t ext4 -o rw /dev/vda /newroot || fail 'mount /dev/vda'
umount /proc /sys
umount /dev
exec switch_root /newroot /lib/systemd/systemd
"#
    );
    cpio.add_file("/init", init.into_bytes(), 0o755);
    std::fs::write(path, cpio.to_bytes())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
