//! Booting a qemu guest that answers on the command channel (channel.rs): the one boot helper
//! of the kernel VM (vm.rs) and of issue 23's guests (guests/machine.rs). The caller builds the
//! machine (`-kernel`, `-append`, devices) and attaches the console and the channel with
//! [`QemuFiles`]; [`boot`] starts qemu so that it dies with the test binary, connects to the
//! channel, and waits for the guest's `@@READY`.

use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::channel::{Channel, ChannelError};
use super::initramfs::CHANNEL_PORT_NAME;
use crate::wait::poll_until;

/// Where a guest's console, command socket and qemu's own output go.
pub struct QemuFiles {
    pub console: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl QemuFiles {
    /// The console as the chardev `console` (a file): the caller attaches it to its serial port.
    pub fn add_console_chardev(&self, command: &mut Command) {
        command
            .arg("-chardev")
            .arg(format!("file,id=console,path={}", self.console.display()));
    }

    /// The command channel: a virtio-serial port named [`CHANNEL_PORT_NAME`] on a socket qemu
    /// serves. On virtio-serial rather than a second UART: virtio queues have flow control end to
    /// end, where an emulated 16550's receive FIFO could leave the end of a command line unread.
    pub fn add_channel(&self, command: &mut Command) {
        command
            .arg("-chardev")
            .arg(format!(
                "socket,id=channel,path={},server=on,wait=on",
                self.socket.display()
            ))
            .args(["-device", "virtio-serial-pci"])
            .arg("-device")
            .arg(format!(
                "virtserialport,chardev=channel,name={CHANNEL_PORT_NAME}"
            ));
    }
}

/// A guest whose agent answered `@@READY`.
pub struct Booted {
    pub child: Child,
    /// Dropping it lets the thread that spawned qemu end (see `spawn_qemu`).
    pub keeper: mpsc::Sender<()>,
    pub channel: Channel,
    pub boot_time: Duration,
    /// What the guest said after `@@READY` (its kernel release).
    pub ready_line: String,
}

/// Why a boot failed: the reason and the console's last lines.
pub struct BootFailure {
    pub reason: String,
    pub console: String,
}

/// How long a boot may take, and how much of the console a failure shows.
pub struct BootLimits {
    /// From qemu's start to the agent's `@@READY`.
    pub boot_timeout: Duration,
    /// How long the guest may take to print its first byte on the console (KVM: /dev/kvm
    /// exists on machines where it runs nothing, and then the console stays empty).
    pub first_output: Option<Duration>,
    pub console_tail_lines: usize,
}

/// Starts `command` (with the console and channel of `files` attached) and waits for the
/// guest's `@@READY`; on failure qemu is stopped.
pub fn boot(
    mut command: Command,
    files: &QemuFiles,
    limits: &BootLimits,
) -> Result<Booted, BootFailure> {
    let log = std::fs::File::create(&files.log).expect("cannot create qemu's log");
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("cannot duplicate a file handle"))
        .stderr(log);
    let started_at = Instant::now();
    let (mut child, keeper) = spawn_qemu(command);
    let fail = |child: &mut Child, reason: String| {
        let _ = child.kill();
        let _ = child.wait();
        let qemu_log = std::fs::read_to_string(&files.log).unwrap_or_default();
        BootFailure {
            reason: format!("{reason}; qemu said: {}", qemu_log.trim()),
            console: tail(
                &std::fs::read_to_string(&files.console).unwrap_or_default(),
                limits.console_tail_lines,
            ),
        }
    };

    // qemu waits (wait=on) until the channel is connected before it starts the guest.
    let mut stream = None;
    poll_until(Duration::from_secs(20), || {
        stream = UnixStream::connect(&files.socket).ok();
        stream.is_some() || !matches!(child.try_wait(), Ok(None))
    });
    let Some(stream) = stream else {
        return Err(fail(
            &mut child,
            "qemu never opened the channel socket".into(),
        ));
    };
    let mut channel = Channel::new(stream);

    if let Some(deadline) = limits.first_output {
        let printed = poll_until(deadline, || {
            std::fs::metadata(&files.console).is_ok_and(|m| m.len() > 0)
                || !matches!(child.try_wait(), Ok(None))
        });
        let size = std::fs::metadata(&files.console).map_or(0, |m| m.len());
        if !printed || size == 0 {
            return Err(fail(
                &mut child,
                format!(
                    "no console output within {deadline:?} (this machine's KVM does not run \
                     the kernel)"
                ),
            ));
        }
    }
    let boot_timeout = limits.boot_timeout;
    let ready = channel.wait_for_line("@@READY", started_at + boot_timeout, || {
        matches!(child.try_wait(), Ok(None))
    });
    match ready {
        Ok(line) => Ok(Booted {
            child,
            keeper,
            channel,
            boot_time: started_at.elapsed(),
            ready_line: line.trim_start_matches("@@READY").trim().to_string(),
        }),
        Err(e) => Err(fail(
            &mut child,
            format!(
                "the guest never got ready within {boot_timeout:?}: {}",
                describe(&e)
            ),
        )),
    }
}

/// Spawns qemu from a thread that lives as long as the guest, with PR_SET_PDEATHSIG: if the
/// test binary dies (even by SIGKILL), qemu dies with it. The death signal fires when the
/// *thread* that spawned the child ends, so that cannot be a test's thread; this one ends only
/// when the returned sender is dropped (the guest dropped) or the process exits.
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
            // Blocks until the guest drops its sender (Err) or the process exits.
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

/// A channel failure in words.
pub fn describe(e: &ChannelError) -> String {
    match e {
        ChannelError::Timeout => "timed out".into(),
        ChannelError::Closed => "qemu exited or closed the channel".into(),
        ChannelError::Io(e) => format!("channel I/O error: {e}"),
        ChannelError::Garbled(line) => format!("garbled answer: {line}"),
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
