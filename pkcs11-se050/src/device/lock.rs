//! The inter-process lock around every APDU exchange: the daemon and a
//! pkcs11-tool run may share one chip, and T=1 has no notion of two hosts.
//!
//! `flock(2)` through `std::fs::File::try_lock`: the kernel drops the lock when
//! its holder dies, so a killed process never leaves the chip locked.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait for another process's exchange before giving up. Exchanges
/// are bounded (BWT, WTX limit), so only a stopped process holds it this long.
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

    /// Take the lock, waiting for other holders up to the timeout.
    pub fn acquire(&self) -> Result<LockGuard<'_>, String> {
        let started = Instant::now();
        let mut pause = Duration::from_micros(100);
        loop {
            match self.file.try_lock() {
                Ok(()) => return Ok(LockGuard { file: &self.file }),
                Err(TryLockError::WouldBlock) => {
                    if started.elapsed() >= self.timeout {
                        return Err(format!(
                            "{} is still held by another process after {} s",
                            self.path.display(),
                            self.timeout.as_secs()
                        ));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(2));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(format!("cannot lock {}: {e}", self.path.display()))
                }
            }
        }
    }
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
        let err = b.acquire().unwrap_err();
        assert!(err.contains("held by another process"), "{err}");
        drop(held);
        let _again = b.acquire().unwrap();
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
