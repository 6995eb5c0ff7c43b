//! A qemu guest driven over the kernel VM's command channel (kernel_vm/channel.rs: one shell
//! command at a time on a virtio-serial port, its exit status and output back), its console in a
//! file. Whatever the guest is (a busybox initramfs, or systemd from a Debian root), it answers
//! `@@READY` once its agent listens, then `@@CMD` lines.

use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use crate::kernel_vm::channel::{Channel, ChannelError, GuestOutput};
use crate::wait::poll_until;

/// The virtio-serial port's name, as the kernel VM's (the guest agents look for it).
pub const CHANNEL_PORT_NAME: &str = crate::kernel_vm::initramfs::CHANNEL_PORT_NAME;

const CONSOLE_TAIL_LINES: usize = 150;

/// What a guest was started with: the qemu command (without the console and channel, which
/// `boot` adds) and where its files go.
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

/// Why a boot failed: the reason and the console's last lines.
pub struct BootFailure {
    pub reason: String,
    pub console: String,
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
        let console_path = dir.join(format!("{name}-console.log"));
        let socket_path = dir.join(format!("{name}-channel.sock"));
        let log_path = dir.join(format!("{name}-qemu.log"));
        command
            .arg("-chardev")
            .arg(format!("file,id=console,path={}", console_path.display()))
            .args(["-serial", "chardev:console"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=channel,path={},server=on,wait=on",
                socket_path.display()
            ))
            .args(["-device", "virtio-serial-pci"])
            .arg("-device")
            .arg(format!(
                "virtserialport,chardev=channel,name={CHANNEL_PORT_NAME}"
            ));
        let log = std::fs::File::create(&log_path).expect("cannot create qemu's log");
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot duplicate a file handle"))
            .stderr(log);
        let started_at = Instant::now();
        let (mut child, keeper) = spawn_qemu(command);
        let fail = |child: &mut Child, reason: String| {
            let _ = child.kill();
            let _ = child.wait();
            let qemu_log = std::fs::read_to_string(&log_path).unwrap_or_default();
            BootFailure {
                reason: format!("{reason}; qemu said: {}", qemu_log.trim()),
                console: tail(
                    &std::fs::read_to_string(&console_path).unwrap_or_default(),
                    CONSOLE_TAIL_LINES,
                ),
            }
        };
        let mut stream = None;
        poll_until(Duration::from_secs(20), || {
            stream = UnixStream::connect(&socket_path).ok();
            stream.is_some() || !matches!(child.try_wait(), Ok(None))
        });
        let Some(stream) = stream else {
            return Err(fail(
                &mut child,
                "qemu never opened the channel socket".into(),
            ));
        };
        let mut channel = Channel::new(stream);
        if let Some(deadline) = first_output {
            let printed = poll_until(deadline, || {
                std::fs::metadata(&console_path).is_ok_and(|m| m.len() > 0)
                    || !matches!(child.try_wait(), Ok(None))
            });
            if !printed || std::fs::metadata(&console_path).map_or(0, |m| m.len()) == 0 {
                return Err(fail(
                    &mut child,
                    format!("no console output within {deadline:?}"),
                ));
            }
        }
        let ready = channel.wait_for_line("@@READY", started_at + boot_timeout, || {
            matches!(child.try_wait(), Ok(None))
        });
        match ready {
            Ok(line) => Ok(Machine {
                name,
                qemu: Mutex::new(child),
                _keeper: keeper,
                channel: Mutex::new(channel),
                console_path,
                dir: dir.clone(),
                boot_time: started_at.elapsed(),
                ready_line: line.trim_start_matches("@@READY").trim().to_string(),
            }),
            Err(e) => Err(fail(
                &mut child,
                format!(
                    "the guest's agent never got ready within {boot_timeout:?}: {}",
                    describe(&e)
                ),
            )),
        }
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

/// Spawns qemu from a thread that lives as long as the machine, with PR_SET_PDEATHSIG, so that
/// qemu dies with the test binary however it ends (as kernel_vm/vm.rs does).
fn spawn_qemu(mut command: Command) -> (Child, mpsc::Sender<()>) {
    let program = command.get_program().to_string_lossy().into_owned();
    let (child_tx, child_rx) = mpsc::channel();
    let (keep_tx, keep_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the
        // parent; it runs in the child between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let spawned = command.spawn();
        let failed = spawned.is_err();
        let _ = child_tx.send(spawned);
        if !failed {
            let _ = keep_rx.recv();
        }
    });
    let child = child_rx
        .recv()
        .expect("the thread that starts qemu vanished")
        .unwrap_or_else(|e| {
            panic!("cannot start {program} (scripts/install-deps installs qemu-system-x86 and qemu-system-arm): {e}")
        });
    (child, keep_tx)
}

fn describe(e: &ChannelError) -> String {
    match e {
        ChannelError::Timeout => "timed out".into(),
        ChannelError::Closed => "qemu exited or closed the channel".into(),
        ChannelError::Io(e) => format!("channel I/O error: {e}"),
        ChannelError::Garbled(line) => format!("garbled answer: {line}"),
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
