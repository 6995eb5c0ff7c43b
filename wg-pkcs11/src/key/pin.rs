//! Where the token's user PIN comes from, and reading it without ever showing it.
//!
//! A URI names its PIN in one of three ways (`uri::PinSpec`):
//! - `pin-value=1234`: in the URI itself (then the file holding the URI holds the PIN, see
//!   `cli/keyfile.rs` for the warning about its mode);
//! - `pin-source=/etc/wireguard/wg0.pin` (or `file:/...`): the first line of a file;
//! - `pin-source=credential:NAME`: the systemd credential NAME, i.e. the first line of
//!   `$CREDENTIALS_DIRECTORY/NAME` (`LoadCredential=NAME:FILE`, `LoadCredentialEncrypted=`,
//!   `SetCredentialEncrypted=` in the unit).
//!
//! A URI without any of them takes the credential [`DEFAULT_CREDENTIAL`] (`pin`) when the
//! process runs with a `$CREDENTIALS_DIRECTORY` that holds one: a unit drop-in with
//! `LoadCredential=pin:/etc/wireguard/wg0.pin` is then all a device needs, the config unchanged.
//!
//! A PIN file is opened once, without following a symbolic link, and checked on the opened
//! file (no race with a rename): a regular file, owned by root or by the daemon's user, that
//! group and others cannot write (they could change the PIN and spend the chip's PIN tries);
//! one that they may read is used, with a warning at every start (as wg-quick warns about a
//! world-accessible config). At most [`MAX_PIN_FILE_READ`] bytes are read. The PIN itself is a
//! [`Pin`]: in a locked, non-dumpable slot (`secret_mem`), wiped when dropped, and its `Debug`
//! shows where it came from, never what it is.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::secret_mem::Locked;
use crate::uri::{PinSpec, Pkcs11Uri};

/// The longest PIN taken, in bytes (PKCS#11 tokens take far shorter ones).
pub const MAX_PIN_LEN: usize = 256;

/// The most of a PIN file that is read: its first line must end within it.
pub const MAX_PIN_FILE_READ: usize = 4096;

/// A PIN's bytes inline (no heap allocation), as `secret_mem::Locked` requires.
struct PinBytes {
    len: usize,
    bytes: [u8; MAX_PIN_LEN],
}

/// The systemd credential a URI without a PIN falls back to, if the process has one.
pub const DEFAULT_CREDENTIAL: &str = "pin";

/// The environment variable systemd sets to the service's credential directory.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// A user PIN and where it came from.
pub struct Pin {
    value: Locked<PinBytes>,
    origin: String,
}

impl Pin {
    /// `text` (UTF-8, at most [`MAX_PIN_LEN`] bytes) copied into a locked slot.
    fn new(text: &str, origin: String) -> Result<Pin, String> {
        if text.len() > MAX_PIN_LEN {
            return Err(format!(
                "the PIN from {origin} is longer than {MAX_PIN_LEN} bytes"
            ));
        }
        let value = Locked::new(|| {
            let mut bytes = [0u8; MAX_PIN_LEN];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            PinBytes {
                len: text.len(),
                bytes,
            }
        });
        Ok(Pin { value, origin })
    }

    /// The PIN, for C_Login only.
    pub fn expose(&self) -> &str {
        std::str::from_utf8(&self.value.bytes[..self.value.len])
            .expect("a Pin is made from UTF-8 text only")
    }

    /// Whether the PIN's page is locked against swap.
    pub fn is_locked(&self) -> bool {
        self.value.is_locked()
    }

    /// `pin-source /etc/wireguard/wg0.pin`, `systemd credential `pin``, `pin-value in the URI`.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pin(from {})", self.origin)
    }
}

/// The PIN the URI names (or the default credential), read now; `None` when there is none.
pub fn read_pin(uri: &Pkcs11Uri) -> Result<Option<Pin>, String> {
    read_pin_with(
        uri,
        std::env::var_os(CREDENTIALS_DIRECTORY).map(PathBuf::from),
    )
}

/// [`read_pin`] with the credential directory given (tests).
pub fn read_pin_with(uri: &Pkcs11Uri, credentials: Option<PathBuf>) -> Result<Option<Pin>, String> {
    match uri.pin_spec() {
        PinSpec::Value(value) => Pin::new(value, "pin-value in the URI".to_string()).map(Some),
        PinSpec::File(path) => {
            let path = Path::new(path);
            let value = first_line(path, &format!("pin-source `{}`", path.display()))?;
            Pin::new(&value, format!("pin-source {}", path.display())).map(Some)
        }
        PinSpec::Credential(name) => {
            check_credential_name(name)?;
            let Some(dir) = credentials.filter(|d| !d.as_os_str().is_empty()) else {
                return Err(format!(
                    "pin-source=credential:{name}: ${CREDENTIALS_DIRECTORY} is not set, so there \
                     are no systemd credentials: run under a unit with \
                     `LoadCredential={name}:/etc/wireguard/IFNAME.pin` (or \
                     LoadCredentialEncrypted= / SetCredentialEncrypted=), or use \
                     pin-source=FILE"
                ));
            };
            let path = dir.join(name);
            if !path.exists() {
                return Err(format!(
                    "pin-source=credential:{name}: no credential `{name}` in ${CREDENTIALS_DIRECTORY} \
                     ({}; it holds: {}): the unit needs `LoadCredential={name}:FILE` (or \
                     LoadCredentialEncrypted= / SetCredentialEncrypted=) with that name",
                    dir.display(),
                    credential_names(&dir)
                ));
            }
            let value = first_line(&path, &format!("systemd credential `{name}`"))?;
            Pin::new(&value, format!("systemd credential `{name}`")).map(Some)
        }
        PinSpec::None => {
            let Some(dir) = credentials.filter(|d| !d.as_os_str().is_empty()) else {
                return Ok(None);
            };
            let path = dir.join(DEFAULT_CREDENTIAL);
            if !path.exists() {
                return Ok(None);
            }
            let value = first_line(&path, &format!("systemd credential `{DEFAULT_CREDENTIAL}`"))?;
            log::info!(
                "the key's URI names no PIN: using the systemd credential `{DEFAULT_CREDENTIAL}`"
            );
            Pin::new(&value, format!("systemd credential `{DEFAULT_CREDENTIAL}`")).map(Some)
        }
    }
}

/// A credential name is a file name in the credential directory, nothing more.
fn check_credential_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(format!(
            "pin-source=credential:{name}: `{name}` is not a credential name (a file name: no \
             `/`, not empty)"
        ));
    }
    Ok(())
}

fn credential_names(dir: &Path) -> String {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect();
            names.sort();
            if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            }
        }
        Err(e) => format!("unreadable: {e}"),
    }
}

/// Whether group or others may do anything with the file (read, write or run it).
pub fn others_may_access(mode: u32) -> bool {
    mode & 0o077 != 0
}

/// The PIN is the first line of the file (its newline, or CR LF, left out). The file is opened
/// once (no symbolic link followed) and checked through that descriptor: a regular file owned
/// by root or by this process's user, not writable by group or others; one they may read is
/// used with a warning. At most [`MAX_PIN_FILE_READ`] bytes are read, into a buffer that is
/// wiped; an empty first line, or one that does not end within them, is an error.
fn first_line(path: &Path, what: &str) -> Result<Zeroizing<String>, String> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        // A FIFO would block the open until a writer comes: refused below instead.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => {
                format!("{what} is a symbolic link: name the file itself")
            }
            _ => format!("cannot read {what}: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {what}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{what} is not a regular file"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(format!(
            "{what} belongs to uid {}, neither root nor this process's user (uid {euid}):              its owner could change the PIN; chown it",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{what} may be written by group or others (mode {:03o}): they could change the PIN \
             and spend the chip's PIN tries; chmod 600 {}",
            meta.mode() & 0o777,
            path.display()
        ));
    }
    if others_may_access(meta.mode()) {
        log::warn!(
            "{what} is accessible by group or others (mode {:03o}): anyone who can read it can use \
             the key while they reach the chip; chmod 600 {}",
            meta.mode() & 0o777,
            path.display()
        );
    }
    let mut content = Zeroizing::new(vec![0u8; MAX_PIN_FILE_READ]);
    let mut filled = 0;
    while filled < content.len() {
        match file.read(&mut content[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read {what}: {e}")),
        }
    }
    let read = &content[..filled];
    let line = match read.iter().position(|&b| b == b'\n') {
        Some(end) => &read[..end],
        None if filled == MAX_PIN_FILE_READ => {
            return Err(format!(
                "{what}: its first line does not end within {MAX_PIN_FILE_READ} bytes"
            ))
        }
        None => read,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(format!("{what} is empty: its first line must be the PIN"));
    }
    let text = std::str::from_utf8(line)
        .map_err(|_| format!("{what}: its first line is not UTF-8 text"))?;
    Ok(Zeroizing::new(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn uri(text: &str) -> Pkcs11Uri {
        Pkcs11Uri::parse(text).unwrap()
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn from_value_file_and_file_uri() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pin");
        write(&file, "4321\nignored\n", 0o600);
        for text in [
            format!("pkcs11:?pin-source={}", file.display()),
            format!("pkcs11:?pin-source=file:{}", file.display()),
        ] {
            let pin = read_pin_with(&uri(&text), None).unwrap().unwrap();
            assert_eq!(pin.expose(), "4321");
            assert!(pin.origin().contains(&file.display().to_string()));
        }
        let pin = read_pin_with(&uri("pkcs11:?pin-value=99"), None)
            .unwrap()
            .unwrap();
        assert_eq!(pin.expose(), "99");
        assert!(read_pin_with(&uri("pkcs11:"), None).unwrap().is_none());
        let missing = read_pin_with(&uri("pkcs11:?pin-source=/nonexistent/pin"), None).unwrap_err();
        assert!(missing.contains("/nonexistent/pin"), "{missing}");
        write(&file, "0000\r\n", 0o600);
        let crlf = read_pin_with(
            &uri(&format!("pkcs11:?pin-source={}", file.display())),
            None,
        );
        assert_eq!(crlf.unwrap().unwrap().expose(), "0000");
        write(&file, "\n1234\n", 0o600);
        let empty = read_pin_with(
            &uri(&format!("pkcs11:?pin-source={}", file.display())),
            None,
        )
        .unwrap_err();
        assert!(empty.contains("empty"), "{empty}");
    }

    #[test]
    fn from_a_named_credential() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("wg0-pin"), "24680\n", 0o400);
        let named = uri("pkcs11:?pin-source=credential:wg0-pin");
        let pin = read_pin_with(&named, Some(dir.path().to_path_buf()))
            .unwrap()
            .unwrap();
        assert_eq!(pin.expose(), "24680");
        assert_eq!(pin.origin(), "systemd credential `wg0-pin`");
        // No credential directory at all: says so, and how to get one.
        let e = read_pin_with(&named, None).unwrap_err();
        assert!(
            e.contains("$CREDENTIALS_DIRECTORY is not set")
                && e.contains("LoadCredential=wg0-pin:"),
            "{e}"
        );
        // A directory without that name: lists what is there.
        let other = uri("pkcs11:?pin-source=credential:other");
        let e = read_pin_with(&other, Some(dir.path().to_path_buf())).unwrap_err();
        assert!(
            e.contains("no credential `other`") && e.contains("it holds: wg0-pin"),
            "{e}"
        );
        for bad in ["credential:", "credential:../pin", "credential:a/b"] {
            let e = read_pin_with(
                &uri(&format!("pkcs11:?pin-source={bad}")),
                Some(dir.path().to_path_buf()),
            )
            .unwrap_err();
            assert!(e.contains("not a credential name"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_default_credential_only_without_a_pin_in_the_uri() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = Some(dir.path().to_path_buf());
        assert!(read_pin_with(&uri("pkcs11:object=k"), credentials.clone())
            .unwrap()
            .is_none());
        write(&dir.path().join(DEFAULT_CREDENTIAL), "1357\n", 0o400);
        let pin = read_pin_with(&uri("pkcs11:object=k"), credentials.clone())
            .unwrap()
            .unwrap();
        assert_eq!(pin.expose(), "1357");
        // A PIN in the URI wins.
        let pin = read_pin_with(&uri("pkcs11:object=k?pin-value=1111"), credentials)
            .unwrap()
            .unwrap();
        assert_eq!(pin.expose(), "1111");
    }

    #[test]
    fn debug_shows_the_origin_never_the_pin() {
        let pin = read_pin_with(&uri("pkcs11:?pin-value=8642"), None)
            .unwrap()
            .unwrap();
        let shown = format!("{pin:?}");
        assert!(!shown.contains("8642"), "{shown}");
        assert!(shown.contains("pin-value in the URI"), "{shown}");
    }

    #[test]
    fn modes_others_may_access() {
        assert!(!others_may_access(0o100600));
        assert!(!others_may_access(0o400));
        assert!(others_may_access(0o640));
        assert!(others_may_access(0o604));
        assert!(others_may_access(0o620));
    }

    fn from_file(path: &Path) -> Result<Option<Pin>, String> {
        read_pin_with(
            &uri(&format!("pkcs11:?pin-source={}", path.display())),
            None,
        )
    }

    /// Issue 20, finding 8: the file is opened once, not through a symbolic link, checked on
    /// the descriptor, and read only so far.
    #[test]
    fn a_pin_file_must_be_a_regular_file_of_ours_that_others_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.pin");
        write(&real, "2468\n", 0o600);
        assert_eq!(from_file(&real).unwrap().unwrap().expose(), "2468");

        let link = dir.path().join("link.pin");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = from_file(&link).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");

        // A FIFO: refused at once, the open does not wait for a writer.
        let fifo = dir.path().join("fifo.pin");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = from_file(&fifo).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");

        for mode in [0o620, 0o602, 0o666] {
            write(&real, "2468\n", mode);
            let e = from_file(&real).unwrap_err();
            assert!(e.contains("written by group or others"), "{mode:o}: {e}");
        }
        // Readable by others: used, with a warning.
        write(&real, "2468\n", 0o644);
        assert_eq!(from_file(&real).unwrap().unwrap().expose(), "2468");

        // Owned by another user (the tests run as root, who can give it away).
        write(&real, "2468\n", 0o600);
        std::os::unix::fs::chown(&real, Some(4242), Some(4242)).unwrap();
        let e = from_file(&real).unwrap_err();
        assert!(e.contains("uid 4242"), "{e}");

        // A first line that does not end within the bound is not read on.
        let long = dir.path().join("long.pin");
        write(&long, &"7".repeat(MAX_PIN_FILE_READ + 10), 0o600);
        let e = from_file(&long).unwrap_err();
        assert!(e.contains("does not end within"), "{e}");
        // A first line within the bound but longer than a PIN can be.
        write(&long, &format!("{}\n", "7".repeat(MAX_PIN_LEN + 1)), 0o600);
        let e = from_file(&long).unwrap_err();
        assert!(e.contains("longer than"), "{e}");
    }

    #[test]
    fn the_pin_lives_in_locked_memory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pin");
        write(&file, "13579\n", 0o600);
        let pin = from_file(&file).unwrap().unwrap();
        assert!(pin.is_locked(), "the PIN's page is not locked");
        let pin = read_pin_with(&uri("pkcs11:?pin-value=8642"), None)
            .unwrap()
            .unwrap();
        assert!(pin.is_locked());
        assert_eq!(pin.expose(), "8642");
    }
}
