//! A qemu guest driven over the kernel VM's command channel (kernel_vm/channel.rs: one shell
//! command at a time on a virtio-serial port, its exit status and output back), its console in a
//! file. Whatever the guest is (a busybox initramfs, or systemd from a Debian root), it answers
//! `@@READY` once its agent listens, then `@@CMD` lines.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use crate::kernel_vm::channel::{Channel, GuestOutput};
pub use crate::kernel_vm::qemu::BootFailure;
use crate::kernel_vm::qemu::{self, describe, tail, BootLimits, QemuFiles};
use crate::wait::poll_until;

/// The virtio-serial port's name, as the kernel VM's (the guest agents look for it).
pub const CHANNEL_PORT_NAME: &str = crate::kernel_vm::initramfs::CHANNEL_PORT_NAME;

const CONSOLE_TAIL_LINES: usize = 150;

/// What a guest was started with: the qemu command (without the console and channel, which
/// `boot` adds) and where its files go. The boot itself is kernel_vm/qemu.rs's, as the kernel
/// VM's.
pub struct Launch {
    pub name: &'static str,
    pub command: Command,
    pub dir: PathBuf,
    /// From qemu's start to the agent's `@@READY`.
    pub boot_timeout: Duration,
    /// How long the guest may take to print its first byte on the console (KVM: /dev/kvm exists
    /// on machines where it runs nothing, and then the console stays empty).
    pub first_output: Option<Duration>,
}

pub struct Machine {
    pub name: &'static str,
    qemu: Mutex<Child>,
    _keeper: mpsc::Sender<()>,
    channel: Mutex<Channel>,
    console_path: PathBuf,
    /// The guest's files (initramfs, images, console), removed with the machine unless
    /// `E2E_KEEP` is set.
    dir: PathBuf,
    pub boot_time: Duration,
    /// The guest's answer after `@@READY` (its kernel release).
    pub ready_line: String,
}

impl Machine {
    /// Starts qemu and waits for the guest's `@@READY`.
    pub fn boot(launch: Launch) -> Result<Machine, BootFailure> {
        let Launch {
            name,
            mut command,
            dir,
            boot_timeout,
            first_output,
        } = launch;
        let files = QemuFiles {
            console: dir.join(format!("{name}-console.log")),
            socket: dir.join(format!("{name}-channel.sock")),
            log: dir.join(format!("{name}-qemu.log")),
        };
        files.add_console_chardev(&mut command);
        command.args(["-serial", "chardev:console"]);
        files.add_channel(&mut command);
        let limits = BootLimits {
            boot_timeout,
            first_output,
            console_tail_lines: CONSOLE_TAIL_LINES,
        };
        let booted = qemu::boot(command, &files, &limits)?;
        Ok(Machine {
            name,
            qemu: Mutex::new(booted.child),
            _keeper: booted.keeper,
            channel: Mutex::new(booted.channel),
            console_path: files.console,
            dir,
            boot_time: booted.boot_time,
            ready_line: booted.ready_line,
        })
    }

    /// Runs `script` with the guest's shell; its status and output whatever they are. Panics
    /// (with the console) only if the guest does not answer within `timeout`.
    pub fn run_with_timeout(&self, script: &str, timeout: Duration) -> GuestOutput {
        let mut channel = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        match channel.run(script, timeout, || self.running()) {
            Ok(output) => output,
            Err(e) => {
                drop(channel);
                self.fail(&format!(
                    "no answer from the guest to {script:?} within {timeout:?}: {}",
                    describe(&e)
                ))
            }
        }
    }

    pub fn run(&self, script: &str) -> GuestOutput {
        self.run_with_timeout(script, Duration::from_secs(120))
    }

    /// Runs `script`; panics with its output and the console unless it exits 0.
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

    /// Writes `contents` to `path` in the guest, mode 0600.
    pub fn write_file(&self, path: &str, contents: &str) {
        let escaped = contents.replace('\'', r"'\''");
        self.run_ok(&format!(
            "mkdir -p \"$(dirname '{path}')\"; umask 077; printf '%s' '{escaped}' > '{path}'"
        ));
    }

    /// Writes `bytes` to `path` in the guest (base64 through the channel), mode 0644.
    pub fn write_bytes(&self, path: &str, bytes: &[u8]) {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        self.run_ok(&format!(
            "mkdir -p \"$(dirname '{path}')\"; echo '{encoded}' | base64 -d > '{path}'"
        ));
    }

    /// The bytes of `path` in the guest.
    pub fn read_bytes(&self, path: &str) -> Vec<u8> {
        use base64::Engine as _;
        let text = self.run_ok(&format!("base64 < '{path}'"));
        let joined: String = text.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(joined)
            .unwrap_or_else(|e| self.fail(&format!("{path} from the guest is not base64: {e}")))
    }

    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console_path).unwrap_or_default()
    }

    pub fn console_path(&self) -> &Path {
        &self.console_path
    }

    /// Panics with `message` and the console's last lines.
    pub fn fail(&self, message: &str) -> ! {
        panic!(
            "{message}\n--- the {} guest's console ({}, last {CONSOLE_TAIL_LINES} lines):\n{}",
            self.name,
            self.console_path.display(),
            tail(&self.console(), CONSOLE_TAIL_LINES)
        );
    }

    fn running(&self) -> bool {
        let mut qemu = self.qemu.lock().unwrap_or_else(|p| p.into_inner());
        matches!(qemu.try_wait(), Ok(None))
    }

    /// Waits until qemu exits by itself (the guest powered off), at most `timeout`.
    pub fn wait_for_exit(&self, timeout: Duration) -> bool {
        poll_until(timeout, || !self.running())
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let mut qemu = self.qemu.lock().unwrap_or_else(|p| p.into_inner());
        let _ = qemu.kill();
        let _ = qemu.wait();
        if std::env::var_os("E2E_KEEP").is_some() {
            eprintln!(
                "E2E_KEEP: the {} guest's files kept in {}",
                self.name,
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
