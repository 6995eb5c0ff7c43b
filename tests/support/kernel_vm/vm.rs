//! The VM: Debian's kernel booted by qemu-system-x86_64 on the initramfs, its NIC a tap device
//! in a network namespace the test made, its console (ttyS0) in a file and a virtio-serial port
//! the command channel.
//!
//! ```text
//!   namespace e2e-...-kvm ("the switch")            each test's own namespace (attach_host)
//!   tap0 ── br0 ── vp<k> ═══════ veth ═══════════════  vm0 10.77.0.<10+k>/24
//!    │
//!   qemu (virtio-net) ── guest eth0 10.77.0.2/24
//! ```
//! The guest is reachable only through that tap: qemu has no other network (no user-mode
//! networking, no forwarding), and the switch has no address of its own.
//!
//! KVM is used when it really boots the kernel: `/dev/kvm` exists on machines where it does not
//! (qemu aborts, or the guest never prints a byte), so it is tried with a short deadline for the
//! first console output and TCG (pure emulation, no KVM needed) is used otherwise.
//! `WG_PKCS11_TEST_VM_ACCEL=tcg` skips the attempt.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

use tempfile::TempDir;

use super::channel::{Channel, GuestOutput};
use super::initramfs::{self, GuestNetwork};
use super::package::KernelPackage;
use super::qemu::{self, describe, tail, BootFailure, BootLimits, Booted, QemuFiles};
use crate::netns::{add_address, Netns};
use crate::wait::poll_until;

/// The guest's address on the link (the host side's addresses are 10.77.0.10 and up).
pub const GUEST_ADDRESS: &str = "10.77.0.2";
const LINK_PREFIX: &str = "10.77.0";
const LINK_PREFIX_LEN: u8 = 24;

/// How long KVM gets to show the first byte of console output before TCG is used instead. A
/// working KVM prints within a second; a broken one here prints nothing at all.
const KVM_FIRST_OUTPUT: Duration = Duration::from_secs(10);

/// From qemu's start to the guest's `@@READY` under TCG: about 5 s on an idle 2-core machine, 25 s
/// on a loaded one; the deadline leaves room for a machine busier still.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

/// Default deadline of one command in the guest.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How much of the console a failure shows.
const CONSOLE_TAIL_LINES: usize = 400;

/// A running VM with Debian's kernel. Dropping it stops qemu and removes its namespace.
pub struct KernelVm {
    switch: Netns,
    qemu: Mutex<Child>,
    qemu_pid: u32,
    /// Dropping the sender lets the thread that spawned qemu end (see `spawn_qemu`).
    _keeper: mpsc::Sender<()>,
    channel: Mutex<Channel>,
    console_path: PathBuf,
    accel: &'static str,
    kernel_release: String,
    next_host: AtomicU32,
    next_index: AtomicU32,
    dir: TempDir,
}

static SHARED: OnceLock<KernelVm> = OnceLock::new();

impl KernelVm {
    /// The VM shared by every test of this test binary: booted by the first test that asks,
    /// stopped (qemu killed, namespace deleted) when the test binary exits. Tests sharing it use
    /// their own interface names, ports and subnets (`next_index`).
    pub fn shared() -> &'static KernelVm {
        SHARED.get_or_init(|| {
            let vm = KernelVm::boot();
            // SAFETY: registering a plain extern "C" function with no captured state.
            unsafe {
                libc::atexit(stop_shared_vm);
            }
            vm
        })
    }

    /// Boots a VM of its own (tests that need a fresh kernel; most use `shared`).
    pub fn boot() -> KernelVm {
        Self::boot_with_extra_initramfs(&|_| Vec::new())
    }

    /// Boots a VM of its own whose initramfs has, after the usual one, the cpio archive `extra`
    /// makes from the kernel package (the kernel unpacks concatenated archives in turn).
    pub fn boot_with_extra_initramfs(extra: &dyn Fn(&KernelPackage) -> Vec<u8>) -> KernelVm {
        crate::netns::require_root();
        let kernel = KernelPackage::get();
        let dir = tempfile::Builder::new()
            .prefix("e2e-kernel-vm-")
            .tempdir()
            .expect("cannot create a temporary directory");
        crate::exit_cleanup::remove_at_exit(dir.path());
        let initrd = dir.path().join("initramfs.cpio");
        initramfs::build(
            &kernel,
            &GuestNetwork {
                address: format!("{GUEST_ADDRESS}/{LINK_PREFIX_LEN}"),
            },
            &initrd,
        );
        let more = extra(&kernel);
        if !more.is_empty() {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(&initrd)
                .and_then(|mut f| f.write_all(&more))
                .unwrap_or_else(|e| panic!("cannot extend {}: {e}", initrd.display()));
        }

        let switch = Netns::new("kvm");
        switch.run(["ip", "link", "add", "br0", "type", "bridge"]);
        switch.run(["ip", "link", "set", "br0", "up"]);
        switch.run(["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"]);
        switch.run(["ip", "link", "set", "tap0", "master", "br0", "up"]);

        let mut failures = Vec::new();
        for accel in accelerators(&kernel) {
            match start(&switch, &kernel, &initrd, dir.path(), accel) {
                Ok((started, console_path)) => {
                    eprintln!(
                        "kernel VM: {} {} booted under {accel} in {:.1} s (console: {})",
                        kernel.name,
                        kernel.version,
                        started.boot_time.as_secs_f64(),
                        console_path.display()
                    );
                    let vm = KernelVm {
                        switch,
                        qemu_pid: started.child.id(),
                        qemu: Mutex::new(started.child),
                        _keeper: started.keeper,
                        channel: Mutex::new(started.channel),
                        console_path,
                        accel,
                        kernel_release: started.ready_line,
                        next_host: AtomicU32::new(10),
                        next_index: AtomicU32::new(1),
                        dir,
                    };
                    return vm;
                }
                Err(failure) => {
                    eprintln!("kernel VM: no boot under {accel}: {}", failure.reason);
                    if accel == "kvm" {
                        remember_kvm_fails(&kernel);
                    }
                    failures.push(failure);
                }
            }
        }
        let report: String = failures
            .iter()
            .map(|f| format!("--- under {}: {}\n{}\n", f.accel, f.reason, f.console))
            .collect();
        panic!("the kernel VM did not boot; console output of each attempt:\n{report}");
    }

    /// `kvm` or `tcg`.
    pub fn accelerator(&self) -> &'static str {
        self.accel
    }

    /// The guest kernel's release (`uname -r`).
    pub fn kernel_release(&self) -> &str {
        &self.kernel_release
    }

    /// A number unique among the users of this VM (1, 2, ...): for guest interface names,
    /// ports and subnets.
    pub fn next_index(&self) -> u32 {
        self.next_index.fetch_add(1, Ordering::Relaxed)
    }

    /// Where the test's files for the VM are (initramfs, console, command socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `script` with the guest's `sh`; returns its status and output whatever they are.
    /// Panics (with the console) only if the guest does not answer within `timeout`.
    pub fn run_with_timeout(&self, script: &str, timeout: Duration) -> GuestOutput {
        let mut channel = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        let result = channel.run(script, timeout, || self.qemu_running());
        match result {
            Ok(output) => output,
            Err(e) => {
                let id = channel.last_id();
                // Is the guest still there? A short probe tells a lost answer from a hung guest.
                let probe = channel.run(
                    "uptime; ps; echo '--- the channel log (guest uptime, command id):'; \
                     tail -n 20 /tmp/channel.log",
                    Duration::from_secs(15),
                    || self.qemu_running(),
                );
                let probe = match probe {
                    Ok(out) => format!("the guest then answered a probe:\n{}", out.output),
                    Err(e) => format!("the guest did not answer a probe either: {}", describe(&e)),
                };
                drop(channel);
                self.fail(&format!(
                    "no answer from the guest to command {id} {script:?} within {timeout:?}: \
                     {}\n{probe}",
                    describe(&e)
                ))
            }
        }
    }

    pub fn run(&self, script: &str) -> GuestOutput {
        self.run_with_timeout(script, COMMAND_TIMEOUT)
    }

    /// Runs `script` in the guest; panics with its output and the console unless it exits 0.
    /// Returns its output.
    pub fn run_ok(&self, script: &str) -> String {
        let out = self.run(script);
        if !out.success() {
            self.fail(&format!(
                "in the guest, {script:?} failed (exit status {}):\n{}",
                out.status, out.output
            ));
        }
        out.output
    }

    /// Writes `contents` to `path` in the guest (mode 0600: keys).
    pub fn write_file(&self, path: &str, contents: &str) {
        let escaped = contents.replace('\'', r"'\''");
        self.run_ok(&format!("umask 077; printf '%s' '{escaped}' > '{path}'"));
    }

    /// Everything the guest's kernel and init printed on the console so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console_path).unwrap_or_default()
    }

    /// The console's last lines, for failure messages.
    pub fn console_tail(&self) -> String {
        tail(&self.console(), CONSOLE_TAIL_LINES)
    }

    /// Panics with `message` and the guest's console, where a refusal by the kernel shows
    /// (wireguard's debug messages are on: `wireguard.dyndbg=+p`).
    pub fn fail(&self, message: &str) -> ! {
        panic!(
            "{message}\n--- the kernel VM's console ({} under {}, last {CONSOLE_TAIL_LINES} \
             lines of {}):\n{}",
            self.kernel_release,
            self.accel,
            self.console_path.display(),
            self.console_tail()
        );
    }

    /// A new namespace of the test's own, joined to the guest's link: its interface `vm0` has
    /// the next free host address (10.77.0.10, .11, ...).
    pub fn attach_host(&self, tag: &str) -> HostLink {
        let ns = Netns::new(tag);
        let k = self.next_index();
        let port = format!("vp{k}");
        self.switch.run([
            "ip",
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "vm0",
            "netns",
            ns.name(),
        ]);
        self.switch
            .run(["ip", "link", "set", &port, "master", "br0", "up"]);
        ns.run(["ip", "link", "set", "vm0", "up"]);
        let address = self.next_host_address();
        add_address(&ns, "vm0", &format!("{address}/{LINK_PREFIX_LEN}"));
        HostLink {
            ns,
            address,
            bridge_port: port,
        }
    }

    /// Another address on the guest's link, unused so far (for a host side that moves).
    pub fn next_host_address(&self) -> String {
        let n = self.next_host.fetch_add(1, Ordering::Relaxed);
        assert!(n < 250, "the kernel VM's link ran out of host addresses");
        format!("{LINK_PREFIX}.{n}")
    }

    fn qemu_running(&self) -> bool {
        let mut qemu = self.qemu.lock().unwrap_or_else(|p| p.into_inner());
        matches!(qemu.try_wait(), Ok(None))
    }
}

impl Drop for KernelVm {
    fn drop(&mut self) {
        let mut qemu = self.qemu.lock().unwrap_or_else(|p| p.into_inner());
        let _ = qemu.kill();
        let _ = qemu.wait();
        // The switch namespace (with tap0 and br0) goes when `self.switch` drops.
    }
}

/// The shared VM outlives every test (statics are never dropped): stop it when the test binary
/// exits. The namespace name and qemu's pid are all that is needed.
extern "C" fn stop_shared_vm() {
    if let Some(vm) = SHARED.get() {
        crate::process::kill(vm.qemu_pid);
        let gone = poll_until(Duration::from_secs(5), || !vm.qemu_running());
        if !gone {
            eprintln!("kernel VM: qemu (pid {}) did not exit", vm.qemu_pid);
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", vm.switch.name()])
            .status();
        // Its directory goes with every VM's, by exit_cleanup (registered at boot, so its
        // handler runs after this one: qemu is gone first).
    }
}

/// A test's namespace on the guest's link.
pub struct HostLink {
    pub ns: Netns,
    /// The namespace's address on the link (without prefix length).
    pub address: String,
    bridge_port: String,
}

impl HostLink {
    /// The name of the veth end on the switch (the other end is `vm0` in `ns`).
    pub fn bridge_port(&self) -> &str {
        &self.bridge_port
    }

    /// The prefix length of the link's addresses.
    pub fn prefix_len(&self) -> u8 {
        LINK_PREFIX_LEN
    }
}

/// Where a failed KVM boot is remembered until the machine reboots (/run is a tmpfs), so that
/// later test binaries go straight to TCG instead of spending KVM_FIRST_OUTPUT each.
fn kvm_failure_marker(kernel: &KernelPackage) -> PathBuf {
    PathBuf::from(format!(
        "/run/wg-pkcs11-tests/kvm-does-not-boot-{}_{}",
        kernel.name, kernel.version
    ))
}

fn remember_kvm_fails(kernel: &KernelPackage) {
    let marker = kvm_failure_marker(kernel);
    if let Some(parent) = marker.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(&marker, "qemu -accel kvm did not boot this kernel\n");
}

fn accelerators(kernel: &KernelPackage) -> Vec<&'static str> {
    let forced = std::env::var("WG_PKCS11_TEST_VM_ACCEL").ok();
    match forced.as_deref() {
        Some("tcg") => return vec!["tcg"],
        Some("kvm") => return vec!["kvm"],
        Some(other) => panic!("WG_PKCS11_TEST_VM_ACCEL={other}: expected kvm or tcg"),
        None => {}
    }
    let kvm_usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let marker = kvm_failure_marker(kernel);
    if kvm_usable && marker.exists() {
        eprintln!(
            "kernel VM: not trying KVM: it did not boot this kernel earlier since this machine \
             started ({} says so; delete it to try again)",
            marker.display()
        );
        vec!["tcg"]
    } else if kvm_usable {
        vec!["kvm", "tcg"]
    } else {
        vec!["tcg"]
    }
}

struct Failure {
    accel: &'static str,
    reason: String,
    console: String,
}

/// Starts qemu under `accel` and waits for the guest's command channel.
fn start(
    switch: &Netns,
    kernel: &KernelPackage,
    initrd: &Path,
    dir: &Path,
    accel: &'static str,
) -> Result<(Booted, PathBuf), Failure> {
    let files = QemuFiles {
        console: dir.join(format!("console-{accel}.log")),
        socket: dir.join(format!("channel-{accel}.sock")),
        log: dir.join(format!("qemu-{accel}.log")),
    };
    let mut command = switch.command("qemu-system-x86_64");
    command
        .args(["-accel", accel, "-m", "384M", "-smp", "1"])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-monitor", "none"])
        .arg("-kernel")
        .arg(kernel.vmlinux())
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            // loglevel=8: wireguard's debug messages (enabled when /init loads it) reach the
            // console. cryptomgr.notests: the crypto self-tests cost seconds under TCG.
            "console=ttyS0 panic=-1 loglevel=8 cryptomgr.notests rdinit=/init",
        ]);
    files.add_console_chardev(&mut command);
    command.args(["-device", "isa-serial,chardev=console"]);
    files.add_channel(&mut command);
    command.args([
        "-netdev",
        "tap,id=net0,ifname=tap0,script=no,downscript=no",
        "-device",
        "virtio-net-pci,netdev=net0,mac=52:54:00:77:00:02",
        "-device",
        "virtio-rng-pci",
    ]);
    if accel == "tcg" {
        // All of the emulated CPU's features: the kernel's SIMD ChaCha20 and Poly1305 need SSSE3
        // and AVX, which the default qemu64 model lacks.
        command.args(["-cpu", "max"]);
    }
    let limits = BootLimits {
        boot_timeout: BOOT_TIMEOUT,
        first_output: (accel == "kvm").then_some(KVM_FIRST_OUTPUT),
        console_tail_lines: CONSOLE_TAIL_LINES,
    };
    match qemu::boot(command, &files, &limits) {
        Ok(booted) => Ok((booted, files.console)),
        Err(BootFailure { reason, console }) => Err(Failure {
            accel,
            reason,
            console,
        }),
    }
}
