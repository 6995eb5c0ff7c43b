//! The virtual chip's persistent state: one file, written atomically, reloaded when it changed.
//!
//! The objects and the file format: `state.rs`.
//!
//! The file holds private keys in clear: a fresh one is readable by its owner only (0600), and
//! every rewrite keeps the mode the file had, so an administrator's chmod/chgrp for a group of
//! users sharing the chip lasts.
//!
//! Saving writes `<state>.tmp`, fsyncs it, renames it over `<state>` and fsyncs the directory,
//! so a process killed at any instant leaves the old or the new file. Writers are serialised by
//! the inter-process lock `<state>.lock`, which the host's `device::LockedTransport` holds
//! around every APDU exchange: this module assumes it is held while a command runs.
//!
//! Other processes sharing the chip rename new versions into place; each rename gives the file
//! a new inode, so comparing (device, inode, length, mtime) with the last load tells cheaply
//! (one `stat`) whether to reload. The store keeps the file it loaded open, so that inode cannot
//! be freed and handed to a newer version: mtime is coarse (a jiffy), and a reused inode of the
//! same length would otherwise look unchanged.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

mod state;
pub use state::*;

/// Why the state file could not be used.
#[derive(Debug)]
pub enum StoreError {
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    Corrupt {
        path: PathBuf,
        reason: String,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io {
                path,
                action,
                source,
            } => {
                write!(
                    f,
                    "virtual SE050 state {}: cannot {action}: {source}",
                    path.display()
                )
            }
            StoreError::Corrupt { path, reason } => write!(
                f,
                "virtual SE050 state file {} is corrupt: {reason}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            StoreError::Corrupt { .. } => None,
        }
    }
}

/// What identifies one version of the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileStamp {
    fn of(metadata: &fs::Metadata) -> Self {
        FileStamp {
            dev: metadata.dev(),
            ino: metadata.ino(),
            len: metadata.len(),
            mtime: metadata.mtime(),
            mtime_nsec: metadata.mtime_nsec(),
        }
    }
}

/// The chip's state, in memory and (unless in-memory) in its file.
pub struct Store {
    path: Option<PathBuf>,
    state: ChipState,
    loaded: Option<FileStamp>,
    /// Keeps the loaded inode allocated (see the module comment).
    _loaded_file: Option<File>,
    /// Transient objects: in `state` (this process's chip RAM) but never written to the file,
    /// and put back into `state` when it is reloaded from the file.
    volatile: BTreeSet<u32>,
    /// The attestation root's certificate, when this process made it (in-memory chips; a
    /// file-backed chip's is in `<state>.attestation-root.pem`).
    root_pem: Option<String>,
}

impl Store {
    /// A store living only in this process.
    pub fn in_memory() -> Self {
        let (state, root_pem) = ChipState::fresh_with_root();
        Store {
            path: None,
            state,
            loaded: None,
            _loaded_file: None,
            volatile: BTreeSet::new(),
            root_pem: Some(root_pem),
        }
    }

    /// Opens the state file, creating a fresh chip when it does not exist.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut store = Store {
            path: Some(path.to_path_buf()),
            state: ChipState::default(),
            loaded: None,
            _loaded_file: None,
            volatile: BTreeSet::new(),
            root_pem: None,
        };
        match fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_fresh(path)?,
            Err(source) => return Err(io_error(path, "read its metadata", source)),
        }
        store.load()?;
        Ok(store)
    }

    /// The state file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn state(&self) -> &ChipState {
        &self.state
    }

    /// Reloads the file if another process replaced it since the last load or save.
    pub fn refresh(&mut self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        match fs::metadata(path) {
            Ok(metadata) if Some(FileStamp::of(&metadata)) == self.loaded => Ok(()),
            Ok(_) => self.load(),
            // Removed behind our back: keep the state we have; the next save recreates it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(io_error(path, "read its metadata", source)),
        }
    }

    /// The PEM certificate of this chip's attestation root: from memory, else from the file
    /// beside the state.
    pub fn attestation_root_pem(&self) -> Option<String> {
        if let Some(pem) = &self.root_pem {
            return Some(pem.clone());
        }
        fs::read_to_string(attestation_root_path(self.path.as_ref()?)).ok()
    }

    /// Gives a state of an earlier build its attestation key and certificate (the caller holds
    /// the chip's lock): the root's PEM is written beside the state first, then the state.
    pub fn ensure_attestation(&mut self) -> Result<(), StoreError> {
        if self
            .state
            .objects
            .contains_key(&crate::protocol::ATTESTATION_KEY)
        {
            return Ok(());
        }
        let mut next = self.state.clone();
        let Some(made) = next.provision_attestation() else {
            return Ok(());
        };
        let root_pem = made.map_err(|reason| StoreError::Corrupt {
            path: self.path.clone().unwrap_or_default(),
            reason,
        })?;
        if let Some(path) = &self.path {
            write_root_pem(path, &root_pem)?;
        }
        self.root_pem = Some(root_pem);
        self.commit(next)
    }

    /// Keeps the object at `id` out of the file from now on (a transient object).
    pub fn make_volatile(&mut self, id: u32) {
        self.volatile.insert(id);
    }

    pub fn is_volatile(&self, id: u32) -> bool {
        self.volatile.contains(&id)
    }

    /// Drops the transient objects `ids` (their RAM is gone: a reset, their session closed).
    pub fn drop_volatile(&mut self, ids: &[u32]) {
        for id in ids {
            if self.volatile.remove(id) {
                self.state.objects.remove(id);
            }
        }
    }

    /// Makes `state` the chip's state: saved first (without the transient objects), so on error
    /// nothing changed.
    pub fn commit(&mut self, state: ChipState) -> Result<(), StoreError> {
        self.volatile.retain(|id| state.objects.contains_key(id));
        if let Some(path) = &self.path {
            let persistent = ChipState {
                objects: state
                    .objects
                    .iter()
                    .filter(|(id, _)| !self.volatile.contains(id))
                    .map(|(id, o)| (*id, o.clone()))
                    .collect(),
                curves: state.curves.clone(),
            };
            let (stamp, file) = write_atomically(path, &persistent.serialize())?;
            self.loaded = Some(stamp);
            self._loaded_file = Some(file);
        }
        self.state = state;
        Ok(())
    }

    fn load(&mut self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = File::open(path).map_err(|e| io_error(path, "open it", e))?;
        // The stamp of the very inode read: a rename racing this load shows up on the next check.
        let metadata = file
            .metadata()
            .map_err(|e| io_error(path, "read its metadata", e))?;
        let bytes = Zeroizing::new(read_all(&file).map_err(|e| io_error(path, "read it", e))?);
        let mut state = ChipState::deserialize(&bytes).map_err(|reason| StoreError::Corrupt {
            path: path.clone(),
            reason,
        })?;
        // This process's transient objects stay, unless another process made a persistent
        // object at the same id meanwhile.
        let volatile = std::mem::take(&mut self.volatile);
        for id in volatile {
            if state.objects.contains_key(&id) {
                continue;
            }
            if let Some(object) = self.state.objects.remove(&id) {
                state.objects.insert(id, object);
                self.volatile.insert(id);
            }
        }
        self.state = state;
        self.loaded = Some(FileStamp::of(&metadata));
        self._loaded_file = Some(file);
        Ok(())
    }
}

fn read_all(mut file: &File) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(bytes)
}

fn io_error(path: &Path, action: &'static str, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// The mode of a new state file: the private keys in it are the chip's secrets.
const FRESH_MODE: u32 = 0o600;

/// Writes `bytes` to a new file at `path` with permission bits `mode` (set on the open file, so
/// neither the umask nor a leftover file of that name decides them).
///
/// Whatever is at `path` is unlinked first (a leftover of a killed writer; unlinking a symlink
/// removes the link, never its target), and the file is created with O_CREAT | O_EXCL |
/// O_NOFOLLOW: a symlink or file planted there between the two steps makes the write fail
/// instead of writing the chip's private keys through it.
fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(FRESH_MODE)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(file)
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    let dir = parent_dir(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "fsync its directory", e))
}

/// temp file, fsync, rename over `path`, fsync the directory; returns the new file's stamp and
/// the open file (the same inode as `path` now).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(FileStamp, File), StoreError> {
    let temp = sibling(path, ".tmp");
    let mode = fs::metadata(path).map_or(FRESH_MODE, |m| m.permissions().mode() & 0o7777);
    let file = write_synced(&temp, bytes, mode)
        .map_err(|e| io_error(&temp, "write the temporary state", e))?;
    let metadata = file
        .metadata()
        .map_err(|e| io_error(&temp, "read its metadata", e))?;
    fs::rename(&temp, path).map_err(|e| io_error(path, "rename the new state into place", e))?;
    sync_dir(path)?;
    Ok((FileStamp::of(&metadata), file))
}

/// Creates the file of a fresh chip unless another process just did: the new file is linked
/// into place, which fails when the name exists, so two processes opening a missing state file
/// at once agree on one chip without holding the lock.
///
/// Only the process whose file was linked writes the attestation root's certificate beside it.
fn create_fresh(path: &Path) -> Result<(), StoreError> {
    let temp = sibling(path, &format!(".new.{}", std::process::id()));
    let (state, root_pem) = ChipState::fresh_with_root();
    write_synced(&temp, &state.serialize(), FRESH_MODE)
        .map_err(|e| io_error(&temp, "write a fresh state", e))?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            write_root_pem(path, &root_pem)?;
            sync_dir(path)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error(path, "create a fresh state", e)),
    }
}

/// `<state>.attestation-root.pem`: the certificate of the test root that issued this chip's
/// attestation certificate (public: mode 0644).
pub fn attestation_root_path(state: &Path) -> PathBuf {
    sibling(state, ".attestation-root.pem")
}

fn write_root_pem(state: &Path, pem: &str) -> Result<(), StoreError> {
    let target = attestation_root_path(state);
    let temp = sibling(&target, ".tmp");
    write_synced(&temp, pem.as_bytes(), 0o644)
        .map_err(|e| io_error(&temp, "write the attestation root", e))?;
    fs::rename(&temp, &target)
        .map_err(|e| io_error(&target, "rename the attestation root into place", e))
}

/// `<state>.lock`, the inter-process lock file of a state file.
pub fn lock_path(state: &Path) -> PathBuf {
    sibling(state, ".lock")
}

/// `<state>.counters`, the operation counters of a state file.
pub fn counters_path(state: &Path) -> PathBuf {
    sibling(state, ".counters")
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
