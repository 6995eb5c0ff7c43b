//! Background processes owned by a test: stopped when the guard drops, also on panic.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait::poll_until;

/// How long a process gets to exit after SIGTERM before it is killed. Daemons remove their
/// UAPI socket and routes on SIGTERM, so they deserve a moment.
const GRACE: Duration = Duration::from_secs(3);

/// A running child process whose stdout and stderr go to a log file.
pub struct Background {
    label: String,
    child: Child,
    log_path: PathBuf,
}

impl Background {
    /// Starts `command` with its output in `log_dir/<label>.log`.
    pub fn spawn(label: &str, mut command: Command, log_dir: &Path) -> Background {
        let log_path = log_dir.join(format!("{label}.log"));
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let log_err = log
            .try_clone()
            .expect("cannot duplicate the log file handle");
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} ({command:?}): {e}"));
        Background {
            label: label.to_string(),
            child,
            log_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether the process is still running (false once it has exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Panics with the process's log if it has exited: for use inside wait loops, so a daemon
    /// that died is reported as such rather than as a timeout.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited unexpectedly ({status}); its output:\n{}",
                self.label,
                self.log()
            );
        }
    }

    /// SIGTERM, wait up to a grace period, then SIGKILL. Returns whether it exited on SIGTERM.
    pub fn stop(&mut self) -> bool {
        if !self.is_running() {
            return true;
        }
        terminate(self.child.id());
        let exited = poll_until(GRACE, || !matches!(self.child.try_wait(), Ok(None)));
        if !exited {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        exited
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends SIGTERM to `pid`.
pub fn terminate(pid: u32) {
    // SAFETY: kill(2) takes plain integers; a stale pid at worst yields ESRCH, which is ignored.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

/// Sends SIGKILL to `pid`.
pub fn kill(pid: u32) {
    // SAFETY: as in `terminate`.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}
