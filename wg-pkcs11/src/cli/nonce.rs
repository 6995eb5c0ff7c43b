//! `nonce [--ttl SECONDS] [--nonce-dir DIR]`: issue a single-use nonce for a device's
//! attestation (printed in hex), remembered in the server's nonce store until it is used or
//! expires (default 600 s).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use wg_pkcs11::attestation::evidence::hex;
use wg_pkcs11::attestation::nonce_store::{NonceStore, DEFAULT_TTL_SECS};

pub fn run(args: &[&str]) -> Result<(), String> {
    let mut ttl = DEFAULT_TTL_SECS;
    let mut dir = None;
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        match (arg, it.next()) {
            ("--ttl", Some(v)) => {
                ttl = v
                    .parse()
                    .ok()
                    .filter(|&t| t > 0)
                    .ok_or_else(|| format!("--ttl {v}: a number of seconds above 0"))?
            }
            ("--nonce-dir", Some(v)) => dir = Some(PathBuf::from(v)),
            _ => return Err(format!("`nonce`: unexpected argument `{arg}`")),
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let nonce = NonceStore::open(dir.as_deref()).issue(now, ttl)?;
    println!("{}", hex(&nonce));
    Ok(())
}
