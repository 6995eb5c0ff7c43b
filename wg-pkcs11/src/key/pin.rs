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
//! A PIN file that group or others may access is used, with a warning at every start (as
//! wg-quick warns about a world-accessible config). The PIN itself is a [`Pin`]: wiped when
//! dropped, and its `Debug` shows where it came from, never what it is.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::uri::{PinSpec, Pkcs11Uri};

/// The systemd credential a URI without a PIN falls back to, if the process has one.
pub const DEFAULT_CREDENTIAL: &str = "pin";

/// The environment variable systemd sets to the service's credential directory.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// A user PIN and where it came from.
pub struct Pin {
    value: Zeroizing<String>,
    origin: String,
}

impl Pin {
    /// The PIN, for C_Login only.
    pub fn expose(&self) -> &str {
        &self.value
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
        PinSpec::Value(value) => Ok(Some(Pin {
            value: value.clone(),
            origin: "pin-value in the URI".to_string(),
        })),
        PinSpec::File(path) => {
            let path = Path::new(path);
            let value = first_line(path, &format!("pin-source `{}`", path.display()))?;
            Ok(Some(Pin {
                value,
                origin: format!("pin-source {}", path.display()),
            }))
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
            Ok(Some(Pin {
                value,
                origin: format!("systemd credential `{name}`"),
            }))
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
            Ok(Some(Pin {
                value,
                origin: format!("systemd credential `{DEFAULT_CREDENTIAL}`"),
            }))
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

/// The PIN is the first line of the file (its newline, or CR LF, left out). A file that group
/// or others may access is used with a warning; an empty first line is an error.
fn first_line(path: &Path, what: &str) -> Result<Zeroizing<String>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {what}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{what} is not a file"));
    }
    if others_may_access(meta.mode()) {
        log::warn!(
            "{what} is accessible by group or others (mode {:03o}): anyone who can read it can use \
             the key while they reach the chip; chmod 600 {}",
            meta.mode() & 0o777,
            path.display()
        );
    }
    let content =
        Zeroizing::new(std::fs::read(path).map_err(|e| format!("cannot read {what}: {e}"))?);
    let line = content.split(|&b| b == b'\n').next().unwrap_or(&[]);
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
}
