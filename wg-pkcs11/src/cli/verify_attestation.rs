//! `verify-attestation EVIDENCE --nonce HEX [--root PEM]... [--nonce-dir DIR]`: the server's
//! check of a device's evidence. Prints the admitted WireGuard key (base64) on the first line,
//! then the chip id and what was verified; otherwise fails with the exact reason.
//!
//! The nonce is consumed from the nonce store before anything else (used once, whatever the
//! outcome). Without `--root`, NXP's shipped root is the only trusted one; with `--root`, only
//! the roots given (a virtual chip's test root is trusted only this way).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use wg_pkcs11::attestation::evidence::MAX_EVIDENCE_BYTES;
use wg_pkcs11::attestation::nonce_store::{parse_nonce, NonceStore};
use wg_pkcs11::attestation::{roots, verify, Evidence, Verified, VerifyOptions};

pub use super::args::VerifyArgs;

fn read_evidence(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let limit = MAX_EVIDENCE_BYTES as u64 + 1;
    let result = if path == "-" {
        std::io::stdin().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(Path::new(path)).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    result.map_err(|e| format!("cannot read evidence {path}: {e}"))?;
    Ok(bytes)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Consumes the nonce, then verifies; the verified evidence or the reason it was refused.
pub fn check(args: &VerifyArgs) -> Result<Verified, String> {
    let nonce_text = args
        .nonce
        .as_deref()
        .ok_or("--nonce HEX is required (from `wg-pkcs11 nonce`)")?;
    let nonce = parse_nonce(nonce_text)?;
    let bytes = read_evidence(&args.evidence)?;
    let (trusted, intermediates) = if args.roots.is_empty() {
        (roots::nxp_roots(), roots::nxp_intermediates())
    } else {
        (roots::load_roots(&args.roots)?, roots::nxp_intermediates())
    };
    let now = now_unix();
    NonceStore::open(args.nonce_dir.as_deref())
        .consume(&nonce, now)
        .map_err(|e| format!("refused: freshness: {e}"))?;
    let evidence = Evidence::parse(&bytes).map_err(|e| format!("refused: {e}"))?;
    verify(
        &evidence,
        &VerifyOptions {
            roots: &trusted,
            intermediates: &intermediates,
            now_unix: now,
            nonce,
        },
    )
    .map_err(|e| format!("refused: {e}"))
}

pub fn run(args: &VerifyArgs) -> Result<(), String> {
    let verified = check(args)?;
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(verified.wireguard_public_key)
    );
    for line in verified.report() {
        println!("{line}");
    }
    Ok(())
}
