//! Single-use nonces for attestation (`wg-pkcs11 nonce` issues, `verify-attestation` and
//! `admit` consume). One file per nonce in a server-side directory (default
//! `/var/lib/wg-pkcs11/nonces`, `WG_PKCS11_NONCE_DIR` or `--nonce-dir` override it), named by
//! the nonce in hex and holding its expiry (Unix seconds). Consuming renames the file away
//! first (rename is atomic: of two verifiers racing for one nonce, one wins), then checks the
//! expiry, then deletes it: a nonce is gone after one attempt, whatever its outcome.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};

use super::evidence::{hex, unhex};

pub const DEFAULT_DIR: &str = "/var/lib/wg-pkcs11/nonces";
pub const DEFAULT_TTL_SECS: u64 = 600;

pub struct NonceStore {
    dir: PathBuf,
}

impl NonceStore {
    /// The store in `dir`, else `$WG_PKCS11_NONCE_DIR`, else [`DEFAULT_DIR`].
    pub fn open(dir: Option<&Path>) -> NonceStore {
        let dir = dir
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("WG_PKCS11_NONCE_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
        NonceStore { dir }
    }

    /// A fresh 16-byte nonce (the chip's freshness size), remembered until `now + ttl`.
    pub fn issue(&self, now_unix: u64, ttl_secs: u64) -> Result<[u8; 16], String> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        self.prune(now_unix);
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        let path = self.dir.join(hex(&nonce));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        writeln!(file, "{}", now_unix.saturating_add(ttl_secs))
            .and_then(|_| file.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(nonce)
    }

    /// Uses the nonce up: Ok only when it was issued here, not yet used, and not expired.
    pub fn consume(&self, nonce: &[u8; 16], now_unix: u64) -> Result<(), String> {
        let name = hex(nonce);
        let path = self.dir.join(&name);
        let taken = self.dir.join(format!(".{name}.{}", std::process::id()));
        fs::rename(&path, &taken)
            .map_err(|_| format!("nonce {name} was not issued here, or is already used"))?;
        let expiry = fs::read_to_string(&taken);
        let _ = fs::remove_file(&taken);
        let expiry: u64 = expiry
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| format!("nonce {name}: its record is unreadable"))?;
        if now_unix > expiry {
            return Err(format!("nonce {name} expired at {expiry} (now {now_unix})"));
        }
        Ok(())
    }

    fn prune(&self, now_unix: u64) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let expired = fs::read_to_string(entry.path())
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .is_some_and(|expiry| now_unix > expiry);
            if expired {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Parses `--nonce HEX` (32 hex digits).
pub fn parse_nonce(text: &str) -> Result<[u8; 16], String> {
    unhex(text.trim())
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| "--nonce must be 32 hex digits (16 bytes)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_used_once_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = NonceStore::open(Some(dir.path()));
        let nonce = store.issue(1000, 60).unwrap();
        store.consume(&nonce, 1010).unwrap();
        assert!(store
            .consume(&nonce, 1010)
            .unwrap_err()
            .contains("already used"));
        let late = store.issue(1000, 60).unwrap();
        assert!(store.consume(&late, 1061).unwrap_err().contains("expired"));
        assert!(store
            .consume(&[9; 16], 1000)
            .unwrap_err()
            .contains("not issued"));
        assert_eq!(parse_nonce(&hex(&nonce)).unwrap(), nonce);
        assert!(parse_nonce("abcd").is_err());
    }
}
