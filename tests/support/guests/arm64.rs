//! An arm64 machine: Debian 12's arm64 kernel in `qemu-system-aarch64 -M virt` (TCG: pure
//! emulation, whatever the host), its whole userland an initramfs made from Debian's arm64
//! packages (busybox-static, wireguard-tools, iproute2 and their libraries, unpacked by
//! mmdebstrap, never installed on the host) plus the arm64 build of this project:
//!
//! ```text
//!   /opt/wg-pkcs11/wg-pkcs11             target/aarch64-unknown-linux-gnu/release/wg-pkcs11
//!   /opt/wg-pkcs11/libpkcs11_se050.so    target/aarch64-unknown-linux-gnu/release/libpkcs11_se050.so
//! ```
//! (`WG_PKCS11_ARM64_DIR` names another directory.) The guest has no network device: the test's
//! traffic stays between namespaces inside it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::debian::{self, Kernel};
use super::machine::{Launch, Machine};
use crate::kernel_vm::cpio::Cpio;
use crate::kernel_vm::package::{load_order, parse_modules_dep};

pub const RUST_TARGET: &str = "aarch64-unknown-linux-gnu";

/// The arm64 userland (with their libraries, which mmdebstrap resolves). dash is the shell the
/// agent runs commands with: busybox's sh prefers its own applets to programs on PATH, and its
/// `ip` knows neither namespaces nor WireGuard.
const PACKAGES: &[&str] = &["busybox-static", "dash", "wireguard-tools", "iproute2"];

/// The modules the guest loads (dependencies come from modules.dep).
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_console",
    "virtio_rng",
    "tun",
    "veth",
    "wireguard",
];

/// Where the guest keeps the project's arm64 files.
pub const GUEST_DIR: &str = "/opt/wg-pkcs11";

/// Parts of the Debian tree the guest does without.
const SKIPPED: &[&str] = &[
    "dev",
    "proc",
    "sys",
    "boot",
    "lib/modules",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache",
    "var/lib/apt",
    "var/lib/dpkg",
    "var/log",
];

/// From qemu's start to `@@READY` under emulation: about 10 s on an idle machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// The directory with the arm64 build: `WG_PKCS11_ARM64_DIR`, else
/// target/aarch64-unknown-linux-gnu/release next to this test's own target/<profile>/.
pub fn build_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WG_PKCS11_ARM64_DIR") {
        return PathBuf::from(dir);
    }
    let profile = crate::artifacts::target_profile_dir();
    profile
        .parent()
        .expect("target/<profile> has no parent")
        .join(RUST_TARGET)
        .join("release")
}

fn build_artefact(name: &str) -> Vec<u8> {
    let path = build_dir().join(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the arm64 build is missing; build it with \
             `cargo build --release --target {RUST_TARGET} -p wg-pkcs11 -p pkcs11-se050` \
             (gcc-aarch64-linux-gnu, CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=\
             aarch64-linux-gnu-gcc), as scripts/test does",
            path.display()
        )
    });
    // ELF, 64-bit, little-endian, e_machine EM_AARCH64 (183): not the host's build by mistake.
    let aarch64 = data.len() > 20 && &data[..4] == b"\x7fELF" && data[4] == 2 && data[18] == 183;
    assert!(aarch64, "{} is not an aarch64 ELF file", path.display());
    data
}

/// Boots the arm64 machine.
pub fn boot() -> Machine {
    crate::netns::require_root();
    let kernel = Kernel::get("arm64", MODULES);
    let userland = debian::tree("arm64", "extract", PACKAGES, "", |_| {});
    let dir = tempfile::Builder::new()
        .prefix("e2e-arm64-")
        .tempdir()
        .expect("cannot create a temporary directory")
        .keep();
    let initrd = dir.join("initramfs.cpio");
    build_initramfs(&kernel, &userland, &initrd);

    let mut command = Command::new("qemu-system-aarch64");
    command
        .args(["-M", "virt", "-accel", "tcg", "-cpu", "cortex-a72"])
        .args(["-m", "512M", "-smp", "1"])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-no-reboot", "-monitor", "none"])
        .arg("-kernel")
        .arg(kernel.image())
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "console=ttyAMA0 panic=-1 loglevel=6 cryptomgr.notests rdinit=/init",
        ])
        .args(["-device", "virtio-rng-pci"]);
    let machine = Machine::boot(Launch {
        name: "arm64",
        command,
        dir: dir.clone(),
        boot_timeout: BOOT_TIMEOUT,
        first_output: None,
    });
    match machine {
        Ok(m) => {
            eprintln!(
                "arm64 guest: Debian's {} booted under TCG in {:.1} s (files in {})",
                kernel.release,
                m.boot_time.as_secs_f64(),
                dir.display()
            );
            m
        }
        Err(f) => panic!(
            "the arm64 guest did not boot: {}\n--- its console:\n{}",
            f.reason, f.console
        ),
    }
}

fn build_initramfs(kernel: &Kernel, userland: &Path, path: &Path) {
    let mut cpio = Cpio::new();
    add_tree(&mut cpio, userland, userland);
    for d in ["dev", "proc", "sys", "tmp", "run", "var/lib"] {
        cpio.add_directory(d);
    }
    cpio.add_char_device("/dev/console", 5, 1, 0o600);
    if !cpio.contains("bin/sh") {
        cpio.add_symlink("/bin/sh", "dash");
    }
    let dep = parse_modules_dep(
        &std::fs::read_to_string(kernel.modules_dir().join("modules.dep"))
            .expect("the arm64 kernel has no modules.dep"),
    );
    let modules = load_order(&dep, MODULES);
    for m in &modules {
        let data = std::fs::read(kernel.modules_dir().join(m))
            .unwrap_or_else(|e| panic!("cannot read the arm64 module {m}: {e}"));
        cpio.add_file(&format!("/modules/{m}"), data, 0o644);
    }
    cpio.add_file(
        &format!("{GUEST_DIR}/wg-pkcs11"),
        build_artefact("wg-pkcs11"),
        0o755,
    );
    cpio.add_file(
        &format!("{GUEST_DIR}/libpkcs11_se050.so"),
        build_artefact("libpkcs11_se050.so"),
        0o644,
    );
    cpio.add_file("/agent", super::agent::script().into_bytes(), 0o755);
    cpio.add_file("/init", init_script(&modules).into_bytes(), 0o755);
    std::fs::write(path, cpio.to_bytes())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Adds everything under `dir` (but `SKIPPED`) at its path relative to `root`.
fn add_tree(cpio: &mut Cpio, root: &Path, dir: &Path) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if SKIPPED.contains(&relative.as_str()) || relative == ".complete" {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            cpio.add_symlink(&relative, &target.to_string_lossy());
        } else if meta.is_dir() {
            cpio.add_directory(&relative);
            add_tree(cpio, root, &path);
        } else if meta.is_file() {
            let data = std::fs::read(&path).unwrap();
            cpio.add_file(&relative, data, meta.permissions().mode() & 0o7777);
        }
    }
}

fn init_script(modules: &[String]) -> String {
    let insmods: String = modules
        .iter()
        .map(|m| format!("insmod /modules/{m} || fail 'insmod {m}'\n"))
        .collect();
    format!(
        r#"#!/bin/busybox sh
/bin/busybox mkdir -p /bb
/bin/busybox --install -s /bb
export PATH=/sbin:/bin:/usr/sbin:/usr/bin:/bb
fail() {{ echo "@@INIT-FAILED: $*" > /dev/console; sleep 1; poweroff -f; }}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/wireguard /run/netns /var/lib/wg-pkcs11
[ -e /var/run ] || ln -s /run /var/run
{insmods}
ip link set lo up || fail 'lo up'
echo "init: modules loaded, agent starting" > /dev/console
/agent /tmp/channel.log 2>/dev/console
fail 'the agent ended'
"#
    )
}
