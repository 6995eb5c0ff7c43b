//! The PINs a token has refused, remembered across restarts without keeping the PINs.
//!
//! A daemon that systemd restarts in a loop must not spend the chip's PIN attempts one restart
//! at a time. So when a token answers `CKR_PIN_INCORRECT` or `CKR_PIN_LOCKED`, the daemon writes
//! a tag of (token serial, PIN) to `STATE_DIR/refused-pins`, and before every `C_Login` it looks
//! for the tag of the PIN it is about to try (see `login.rs` for when it then declines).
//!
//! The tag is keyed BLAKE2s-256 (RFC 7693, the `blake2` crate's `Blake2sMac256`) under a random
//! 32-byte key made on first use, `STATE_DIR/pin-memory.key` (mode 0600, the directory 0700):
//! without that key the file says nothing about the PINs, not even for a 4-digit PIN that a
//! plain hash would give away in 10,000 guesses. Only refused PINs are ever tagged; a PIN that
//! logs in has its tag removed.
//!
//! `STATE_DIR`: `$WG_PKCS11_STATE_DIR`, else `/var/lib/wg-pkcs11` for root (the unit's
//! `StateDirectory=`), else `$XDG_STATE_HOME/wg-pkcs11` or `~/.local/state/wg-pkcs11`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use blake2::digest::{FixedOutput, Mac};
use blake2::Blake2sMac256;
use zeroize::Zeroizing;

/// The environment variable that moves the state directory (tests, unusual layouts).
pub const STATE_DIR_ENV: &str = "WG_PKCS11_STATE_DIR";
/// root's state directory (systemd's `StateDirectory=wg-pkcs11`).
pub const SYSTEM_STATE_DIR: &str = "/var/lib/wg-pkcs11";

const KEY_FILE: &str = "pin-memory.key";
const TAGS_FILE: &str = "refused-pins";
/// Separates this use of the key from any other, and fixes the tag's format.
const CONTEXT: &[u8] = b"wg-pkcs11 refused PIN v1\0";

/// Where the memory lives.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from(SYSTEM_STATE_DIR);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Path::new(&dir).join("wg-pkcs11");
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    Path::new(&home).join(".local/state/wg-pkcs11")
}

/// The refused-PIN memory in one directory.
pub struct RefusalMemory {
    dir: PathBuf,
}

impl RefusalMemory {
    pub fn system() -> RefusalMemory {
        RefusalMemory::at(state_dir())
    }

    pub fn at(dir: PathBuf) -> RefusalMemory {
        RefusalMemory { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key, if one was made (no key: nothing was ever remembered).
    fn existing_key(&self) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
        let path = self.dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => Ok(Some(Zeroizing::new(bytes))),
            Ok(bytes) => Err(format!(
                "{}: {} bytes, expected 32 (delete it to start the memory afresh)",
                path.display(),
                bytes.len()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    fn key_or_new(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        if let Some(key) = self.existing_key()? {
            return Ok(key);
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let mut key = Zeroizing::new(vec![0u8; 32]);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key);
        let path = self.dir.join(KEY_FILE);
        write_atomically(&path, &key)?;
        Ok(key)
    }

    fn tag(key: &[u8], token: &str, pin: &str) -> String {
        let mut mac = <Blake2sMac256 as Mac>::new_from_slice(key).expect("a 32-byte key");
        mac.update(CONTEXT);
        mac.update(&(token.len() as u32).to_be_bytes());
        mac.update(token.as_bytes());
        mac.update(pin.as_bytes());
        let tag = mac.finalize_fixed();
        tag.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn tags(&self) -> Result<Vec<String>, String> {
        let path = self.dir.join(TAGS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    fn write_tags(&self, tags: &[String]) -> Result<(), String> {
        let mut text = String::new();
        for tag in tags {
            text.push_str(tag);
            text.push('\n');
        }
        write_atomically(&self.dir.join(TAGS_FILE), text.as_bytes())
    }

    /// Whether the token `token` (its serial) refused this PIN before.
    pub fn was_refused(&self, token: &str, pin: &str) -> Result<bool, String> {
        let Some(key) = self.existing_key()? else {
            return Ok(false);
        };
        let tag = Self::tag(&key, token, pin);
        Ok(self.tags()?.contains(&tag))
    }

    /// Remember that the token refused this PIN.
    pub fn remember_refusal(&self, token: &str, pin: &str) -> Result<(), String> {
        let key = self.key_or_new()?;
        let tag = Self::tag(&key, token, pin);
        let mut tags = self.tags()?;
        if !tags.contains(&tag) {
            tags.push(tag);
            self.write_tags(&tags)?;
        }
        Ok(())
    }

    /// The PIN logged in: forget that it was refused (it is right now).
    pub fn forget(&self, token: &str, pin: &str) -> Result<(), String> {
        let Some(key) = self.existing_key()? else {
            return Ok(());
        };
        let tag = Self::tag(&key, token, pin);
        let mut tags = self.tags()?;
        let before = tags.len();
        tags.retain(|t| *t != tag);
        if tags.len() != before {
            self.write_tags(&tags)?;
        }
        Ok(())
    }
}

/// Temporary file (mode 0600), fsync, rename: never a half-written key or list.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        format!("cannot write {}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn remembers_forgets_and_keeps_no_pin() {
        let dir = tempfile::tempdir().unwrap();
        let memory = RefusalMemory::at(dir.path().join("state"));
        assert!(!memory.was_refused("SERIAL1", "1234").unwrap());
        memory.remember_refusal("SERIAL1", "1234").unwrap();
        assert!(memory.was_refused("SERIAL1", "1234").unwrap());
        // Another PIN, another token: not refused.
        assert!(!memory.was_refused("SERIAL1", "1235").unwrap());
        assert!(!memory.was_refused("SERIAL2", "1234").unwrap());
        // Nothing in the directory holds the PIN, and the key and list are root's alone.
        for entry in std::fs::read_dir(memory.dir()).unwrap() {
            let entry = entry.unwrap();
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(
                !bytes.windows(4).any(|w| w == b"1234"),
                "{:?} holds the PIN",
                entry.path()
            );
            assert_eq!(entry.metadata().unwrap().mode() & 0o777, 0o600);
        }
        assert_eq!(
            std::fs::metadata(memory.dir()).unwrap().mode() & 0o777,
            0o700
        );
        // Twice is once.
        memory.remember_refusal("SERIAL1", "1234").unwrap();
        assert_eq!(memory.tags().unwrap().len(), 1);
        memory.forget("SERIAL1", "1234").unwrap();
        assert!(!memory.was_refused("SERIAL1", "1234").unwrap());
    }

    #[test]
    fn the_tag_depends_on_the_key() {
        // The same PIN and token under two random keys: two unrelated tags, so the list cannot
        // be matched against a table of tags of short PINs.
        let a = RefusalMemory::tag(&[1u8; 32], "S", "1234");
        let b = RefusalMemory::tag(&[2u8; 32], "S", "1234");
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        // Token and PIN are kept apart: ("S1", "234") is not ("S", "1234").
        assert_ne!(
            RefusalMemory::tag(&[1u8; 32], "S1", "234"),
            RefusalMemory::tag(&[1u8; 32], "S", "1234")
        );
    }

    #[test]
    fn a_damaged_key_is_an_error_that_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let memory = RefusalMemory::at(dir.path().to_path_buf());
        let e = memory.was_refused("S", "1").unwrap_err();
        assert!(e.contains(KEY_FILE) && e.contains("expected 32"), "{e}");
    }
}
