//! `verify-attestation EVIDENCE --nonce HEX [--root PEM]... [--nonce-dir DIR]`: the server's
//! check of a device's evidence. Prints the admitted WireGuard key (base64) on the first line,
//! then the chip id and what was verified; otherwise fails with the exact reason.
//!
//! The nonce is consumed from the nonce store before anything else (used once, whatever the
//! outcome). Without `--root`, NXP's shipped root is the only trusted one; with `--root`, only
//! the roots given (a virtual chip's test root is trusted only this way).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use wg_pkcs11::attestation::evidence::MAX_EVIDENCE_BYTES;
use wg_pkcs11::attestation::nonce_store::{parse_nonce, NonceStore};
use wg_pkcs11::attestation::{roots, verify, Evidence, Verified, VerifyOptions};

#[derive(Debug, Default)]
pub struct VerifyArgs {
    pub evidence: String,
    pub nonce: Option<String>,
    pub roots: Vec<PathBuf>,
    pub nonce_dir: Option<PathBuf>,
}

/// Takes `--nonce`, `--root`, `--nonce-dir` from `args`; returns the rest.
pub fn take_verify_options<'a>(
    args: &[&'a str],
    into: &mut VerifyArgs,
) -> Result<Vec<&'a str>, String> {
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .copied()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg {
            "--nonce" => into.nonce = Some(value("--nonce")?.to_string()),
            "--root" => into.roots.push(PathBuf::from(value("--root")?)),
            "--nonce-dir" => into.nonce_dir = Some(PathBuf::from(value("--nonce-dir")?)),
            other => rest.push(other),
        }
    }
    Ok(rest)
}

pub fn parse_args(args: &[&str]) -> Result<VerifyArgs, String> {
    let mut parsed = VerifyArgs::default();
    let rest = take_verify_options(args, &mut parsed)?;
    match rest.as_slice() {
        [evidence] if !evidence.starts_with("--") || *evidence == "-" => {
            parsed.evidence = evidence.to_string()
        }
        _ => return Err("`verify-attestation` takes one EVIDENCE file (or -)".into()),
    }
    Ok(parsed)
}

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

pub fn run(args: &[&str]) -> Result<(), String> {
    let args = parse_args(args)?;
    let verified = check(&args)?;
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(verified.wireguard_public_key)
    );
    for line in verified.report() {
        println!("{line}");
    }
    Ok(())
}
