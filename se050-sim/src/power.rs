//! A power cycle of the virtual chip, asked for from outside the processes using it.
//!
//! The real chip loses its RAM when its power goes: applet sessions, the applet selection,
//! transient objects. Tests of programs that must survive that (the daemon logs in again after a
//! chip reset) run the chip in another process, out of reach of the in-process
//! [`FaultHandle`](super::FaultHandle). So every virtual applet opened on a state file watches a
//! file next to it, `STATE.power`: [`power_cycle`] writes a new value there, and each applet
//! resets itself before its next command, once per new value, as every process sharing the chip
//! sees the same chip lose its power.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The file a power cycle of the chip with state `state` is announced in.
pub fn power_file(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".power");
    PathBuf::from(name)
}

/// Cuts the virtual chip's power for a moment: every process using it sees a chip reset before
/// its next command (sessions and selection gone; the persistent state stays).
pub fn power_cycle(state: &Path) -> std::io::Result<()> {
    let path = power_file(state);
    let count: u64 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    let temporary = path.with_extension("power.tmp");
    // A new file, never one planted at the temporary name (a symlink is not followed).
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&temporary)?;
    std::io::Write::write_all(&mut file, format!("{}\n", count + 1).as_bytes())?;
    std::fs::rename(&temporary, &path)
}

/// Which version of the power file one applet has seen: each `power_cycle` renames a new file
/// into place, so a new inode (or, on a file system that reuses them, a new change time or
/// size) is a new announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    ctime_ns: i128,
    size: u64,
}

impl Stamp {
    /// One stat of the file, checked before every APDU: reading it would cost three more
    /// system calls there, a quarter of a derive's time on the zero-latency chip.
    fn of(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            size: m.size(),
        })
    }
}

/// What one applet has seen of the power file.
#[derive(Debug)]
pub struct PowerWatch {
    path: PathBuf,
    seen: Option<Stamp>,
}

impl PowerWatch {
    /// Watching from now on: cycles announced before the applet opened do not count.
    pub fn new(state: &Path) -> PowerWatch {
        let path = power_file(state);
        let seen = Stamp::of(&path);
        PowerWatch { path, seen }
    }

    /// Whether a power cycle was announced since the last call.
    pub fn cycled(&mut self) -> bool {
        let now = Stamp::of(&self.path);
        if now.is_some() && now != self.seen {
            self.seen = now;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cycle_is_seen_once_by_each_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("chip.state");
        power_cycle(&state).unwrap();
        let mut a = PowerWatch::new(&state);
        assert!(!a.cycled(), "a cycle before the watch began does not count");
        let mut b = PowerWatch::new(&state);
        power_cycle(&state).unwrap();
        assert!(a.cycled());
        assert!(!a.cycled());
        assert!(b.cycled());
        power_cycle(&state).unwrap();
        assert!(a.cycled() && b.cycled());
    }
}
