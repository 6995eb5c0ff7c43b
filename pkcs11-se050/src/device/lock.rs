//! The inter-process lock around every APDU exchange: the daemon and a
//! pkcs11-tool run may share one chip, and T=1 has no notion of two hosts.
//!
//! `flock(2)` through `std::fs::File::try_lock`: the kernel drops the lock when
//! its holder dies, so a killed process never leaves the chip locked.
//!
//! The trade-off of a shared lock file: it is created 0666 (in /run/lock, or next to
//! the virtual chip's state), because the daemon runs as root while users run
//! pkcs11-tool or p11-kit against the same chip, and every one of them must be able
//! to open it. Anyone who can open it can also hold it: any local user can keep the
//! chip from every other process for as long as they like (denial of service; they
//! learn nothing and can send nothing to the chip through it). Where that matters,
//! create the file beforehand with a group of the module's users and mode 0660: it
//! is opened, never recreated or chmod-ed. What the module guarantees is that such a
//! hold cannot hang it: every wait is bounded ([`DEFAULT_LOCK_TIMEOUT`], or the
//! configuration's `lock_timeout_ms`), and the error names the lock file and, from
//! /proc/locks, the process holding it.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait for another process's exchange before giving up. A live holder
/// keeps the lock for one exchange, which the link bounds at 30 s even with WTX;
/// a longer hold is a stopped process or someone else's.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// The lock file of the chip at `address` on the bus `device` (`/dev/i2c-1`):
/// `/run/lock/pkcs11-se050-i2c-1-0x48.lock`, or under /tmp when /run/lock is missing.
pub fn i2c_lock_path(device: &Path, address: u8) -> PathBuf {
    let bus = device
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.strip_prefix("i2c-").unwrap_or(n).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let dir = Path::new("/run/lock");
    let dir = if dir.is_dir() { dir } else { Path::new("/tmp") };
    dir.join(format!("pkcs11-se050-i2c-{bus}-{address:#04x}.lock"))
}

/// The lock file of a virtual chip's state file: `STATE.lock`.
pub fn state_lock_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// An open lock file; [`DeviceLock::acquire`] takes the lock.
#[derive(Debug)]
pub struct DeviceLock {
    path: PathBuf,
    file: File,
    timeout: Duration,
}

/// Holding the lock; dropping it releases it.
#[derive(Debug)]
pub struct LockGuard<'a> {
    file: &'a File,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Closing the file would release it too; an unlock error leaves nothing to do.
        let _ = self.file.unlock();
    }
}

impl DeviceLock {
    /// Open (creating it if needed) the lock file at `path`.
    pub fn open(path: &Path) -> Result<DeviceLock, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            // Shared by the daemon (root) and users' tools.
            .mode(0o666)
            // /run/lock and /tmp are writable by everyone: a symlink planted at the lock's
            // name must not make root create or open a file elsewhere.
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| format!("cannot open lock file {}: {e}", path.display()))?;
        Ok(DeviceLock {
            path: path.to_owned(),
            file,
            timeout: DEFAULT_LOCK_TIMEOUT,
        })
    }

    pub fn with_timeout(mut self, timeout: Duration) -> DeviceLock {
        self.timeout = timeout;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Another handle on the lock file (scp03::owner keeps a token in it). Locking is done
    /// through this `DeviceLock` only.
    pub fn try_clone_file(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }

    /// Take the lock, waiting for other holders up to the timeout. The error says why, and
    /// who holds it; the caller adds the lock file's path.
    pub fn acquire(&self) -> Result<LockGuard<'_>, String> {
        let started = Instant::now();
        let mut pause = Duration::from_micros(100);
        loop {
            match self.file.try_lock() {
                Ok(()) => return Ok(LockGuard { file: &self.file }),
                Err(TryLockError::WouldBlock) => {
                    if started.elapsed() >= self.timeout {
                        return Err(format!(
                            "still held by another process after {} ms; {}",
                            self.timeout.as_millis(),
                            describe_holders(&self.file)
                        ));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(2));
                }
                Err(TryLockError::Error(e)) => return Err(format!("flock failed: {e}")),
            }
        }
    }
}

/// Who holds the lock on `file`, as far as /proc/locks tells: "held by process 1234
/// (wg-pkcs11)". A best effort for the error message; it reads one small file.
fn describe_holders(file: &File) -> String {
    let holders = file.metadata().ok().and_then(|meta| {
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        Some(flock_holders(&locks, meta.dev(), meta.ino()))
    });
    match holders.as_deref() {
        Some([]) | None => "its holder is not listed in /proc/locks".into(),
        Some(pids) => {
            let named: Vec<String> = pids
                .iter()
                .map(|pid| {
                    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"));
                    let comm = comm.as_deref().map(str::trim).unwrap_or("?");
                    if *pid == std::process::id() {
                        format!("{pid} ({comm}, this process)")
                    } else {
                        format!("{pid} ({comm})")
                    }
                })
                .collect();
            format!(
                "held by process {} (per /proc/locks). Every user of the chip shares this \
                 lock file, so any local user can hold it: stop that process, or give the \
                 file a group of the chip's users and mode 0660",
                named.join(", ")
            )
        }
    }
}

/// The pids /proc/locks gives for the flock(2) locks held (not waited for) on the file
/// with device number `dev` and inode `ino`. Lines look like
/// `3: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`; the device is "major:minor" in hex.
fn flock_holders(proc_locks: &str, dev: u64, ino: u64) -> Vec<u32> {
    // glibc's encoding of dev_t (what stat returns).
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let wanted = format!("{major:02x}:{minor:02x}:{ino}");
    let mut pids = Vec::new();
    for line in proc_locks.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A waiter's line has "->" after the number; only holders count.
        let [_, "FLOCK", _, _, pid, file, ..] = fields.as_slice() else {
            continue;
        };
        if *file != wanted {
            continue;
        }
        if let Ok(pid) = pid.parse::<u32>() {
            if pid > 0 && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_paths() {
        assert_eq!(
            state_lock_path(Path::new("/var/lib/se050/state.bin")),
            Path::new("/var/lib/se050/state.bin.lock")
        );
        let p = i2c_lock_path(Path::new("/dev/i2c-1"), 0x48);
        assert!(
            p.to_str()
                .unwrap()
                .ends_with("pkcs11-se050-i2c-1-0x48.lock"),
            "{p:?}"
        );
    }

    #[test]
    fn second_holder_waits_then_times_out_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chip.lock");
        let a = DeviceLock::open(&path).unwrap();
        let b = DeviceLock::open(&path)
            .unwrap()
            .with_timeout(Duration::from_millis(30));
        let held = a.acquire().unwrap();
        let started = Instant::now();
        let err = b.acquire().unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited too long"
        );
        assert!(err.contains("held by another process after 30 ms"), "{err}");
        // The holder is this very process, found through /proc/locks.
        let me = format!("held by process {} (", std::process::id());
        assert!(err.contains(&me) && err.contains("this process"), "{err}");
        drop(held);
        let _again = b.acquire().unwrap();
    }

    #[test]
    fn proc_locks_lines_are_read_for_holders_only() {
        // st_dev 0x801 is major 8, minor 1 ("08:01"); 0x1a is major 0, minor 0x1a.
        let text = "1: POSIX  ADVISORY  WRITE 700 08:01:42 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 1234 08:01:42 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 999 08:01:42 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 55 08:01:43 0 EOF\n\
                    4: FLOCK  ADVISORY  READ 66 00:1a:42 0 EOF\n\
                    garbage\n";
        assert_eq!(flock_holders(text, 0x801, 42), vec![1234]);
        assert_eq!(flock_holders(text, 0x1a, 42), vec![66]);
        assert!(flock_holders(text, 0x801, 7).is_empty());
    }

    #[test]
    fn a_symlink_at_the_lock_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("somewhere-else");
        let path = dir.path().join("chip.lock");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = DeviceLock::open(&path).unwrap_err();
        assert!(err.contains("cannot open lock file"), "{err}");
        assert!(!target.exists(), "the lock created the symlink's target");
    }
}
