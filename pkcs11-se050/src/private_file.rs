//! Reading a file that decides what the module trusts (its configuration, a key file).
//!
//! The file is opened once, without following a symlink at its last component, and everything
//! is decided on that open file: `fstat` says whether it is a regular file, who owns it and who
//! may write (or read) it, and the read stops at a bound. Checking a path and opening it again
//! would let the file be swapped in between.
//!
//! A file that another non-root user owns, or that group or others may write, is refused: its
//! contents would be chosen by someone other than the file's reader or root. A key file must
//! also be unreadable by group and others. Errors name the file and its mode, never its contents.

use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Who besides the owner may have access to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Group and others may read, not write (a configuration).
    OthersMayRead,
    /// Nobody but the owner (a key file).
    OwnerOnly,
}

/// Why a file was not read.
#[derive(Debug)]
pub struct FileError {
    pub path: PathBuf,
    pub problem: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for FileError {}

/// The effective user of this process.
fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// A file's text (wiped when dropped: a key file's is secret) and its permission bits.
pub struct Checked {
    pub text: Zeroizing<String>,
    pub mode: u32,
}

impl fmt::Debug for Checked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the text: it may be a key file's.
        write!(
            f,
            "Checked {{ {} bytes, mode {:04o} }}",
            self.text.len(),
            self.mode
        )
    }
}

/// Reads `path` (at most `max_len` bytes) as text after the checks above.
pub fn read(path: &Path, access: Access, max_len: u64) -> Result<Checked, FileError> {
    let fail = |problem: String| FileError {
        path: path.to_path_buf(),
        problem,
    };
    // O_NONBLOCK: a FIFO planted at the path must not hang the open; it is refused below.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => fail("is a symbolic link: refused (name the file itself)".into()),
            _ => fail(format!("cannot open: {e}")),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| fail(format!("cannot fstat: {e}")))?;
    check(&meta, access, effective_uid()).map_err(fail)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(max_len + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > max_len {
        return Err(fail(format!(
            "longer than {max_len} bytes: refused (not the file meant)"
        )));
    }
    // from_utf8 takes the allocation over; on failure it hands it back, wiped with `bytes`'s.
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(text) => Ok(Checked {
            text: Zeroizing::new(text),
            mode: meta.mode() & 0o7777,
        }),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            Err(fail("is not UTF-8 text".into()))
        }
    }
}

/// The owner and mode rules, on an open file's metadata.
fn check(meta: &std::fs::Metadata, access: Access, euid: u32) -> Result<(), String> {
    let mode = meta.mode() & 0o7777;
    if !meta.file_type().is_file() {
        return Err(format!("is not a regular file (mode {mode:04o}): refused"));
    }
    let owner = meta.uid();
    if owner != 0 && owner != euid {
        return Err(format!(
            "is owned by uid {owner}, neither root nor this process's user (uid {euid}): refused"
        ));
    }
    if access == Access::OwnerOnly && mode & 0o077 != 0 {
        return Err(format!(
            "is readable or writable by group or others (mode {mode:04o}): refused; make it \
             private with `chmod 600`"
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "is writable by group or others (mode {mode:04o}): refused; `chmod go-w` it"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file_with_mode(dir: &Path, mode: u32) -> PathBuf {
        let path = dir.join(format!("f{mode:o}"));
        std::fs::write(&path, "ENC secret-word\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn group_or_other_writable_files_are_refused_naming_file_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o664, 0o646, 0o666, 0o622] {
            let path = file_with_mode(dir.path(), mode);
            let e = read(&path, Access::OthersMayRead, 4096)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&path.display().to_string()) && e.contains(&format!("{mode:04o}")),
                "{e}"
            );
            assert!(!e.contains("secret-word"), "{e}");
        }
        let readable = file_with_mode(dir.path(), 0o644);
        let checked = read(&readable, Access::OthersMayRead, 4096).unwrap();
        assert_eq!(&*checked.text, "ENC secret-word\n");
        assert_eq!(checked.mode, 0o644);
        let e = read(&readable, Access::OwnerOnly, 4096)
            .unwrap_err()
            .to_string();
        assert!(e.contains("0644") && e.contains("readable"), "{e}");
        read(&file_with_mode(dir.path(), 0o600), Access::OwnerOnly, 4096).unwrap();
    }

    #[test]
    fn another_users_file_is_refused_roots_and_ours_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_with_mode(dir.path(), 0o644);
        let meta = std::fs::metadata(&path).unwrap();
        let owner = meta.uid();
        // As its owner, and with root as its owner (whoever reads), the file is accepted.
        check(&meta, Access::OthersMayRead, owner).unwrap();
        if owner == 0 {
            check(&meta, Access::OthersMayRead, 1000).unwrap();
        }
        // Owned by another non-root user: refused, naming that uid.
        std::os::unix::fs::chown(&path, Some(4242), None).expect("the tests run as root");
        let meta = std::fs::metadata(&path).unwrap();
        let e = check(&meta, Access::OthersMayRead, 0).unwrap_err();
        assert!(e.contains("uid 4242"), "{e}");
        let e = read(&path, Access::OthersMayRead, 4096)
            .unwrap_err()
            .to_string();
        assert!(e.contains("uid 4242"), "{e}");
    }

    #[test]
    fn symlinks_fifos_and_long_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = file_with_mode(dir.path(), 0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = read(&link, Access::OwnerOnly, 4096)
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");

        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg("-m")
            .arg("600")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let e = read(&fifo, Access::OwnerOnly, 4096)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");

        let long = dir.path().join("long");
        std::fs::write(&long, vec![b'#'; 5000]).unwrap();
        std::fs::set_permissions(&long, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = read(&long, Access::OwnerOnly, 4096)
            .unwrap_err()
            .to_string();
        assert!(e.contains("longer than 4096"), "{e}");
        assert_eq!(
            read(&long, Access::OwnerOnly, 5000).unwrap().text.len(),
            5000
        );
    }
}
