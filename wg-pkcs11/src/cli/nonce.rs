//! `nonce [--ttl SECONDS] [--nonce-dir DIR]`: issue a single-use nonce for a device's
//! attestation (printed in hex), remembered in the server's nonce store until it is used or
//! expires (default 600 s).

use super::args::NonceArgs;
use std::time::{SystemTime, UNIX_EPOCH};

use wg_pkcs11::attestation::evidence::hex;
use wg_pkcs11::attestation::nonce_store::{NonceStore, DEFAULT_TTL_SECS};

pub fn run(args: &NonceArgs) -> Result<(), String> {
    let ttl = args.ttl.unwrap_or(DEFAULT_TTL_SECS);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let nonce = NonceStore::open(args.nonce_dir.as_deref()).issue(now, ttl)?;
    println!("{}", hex(&nonce));
    Ok(())
}
