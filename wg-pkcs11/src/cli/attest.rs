//! `attest URI --nonce HEX`: the device's evidence (JSON, attestation/evidence.rs) on stdout:
//! the WireGuard public key, the chip's attested read of the key exactly as exchanged, and the
//! chip's certificate chain, answering the server's nonce (`wg-pkcs11 nonce` on the server).

use super::args::AttestArgs;
use wg_pkcs11::attestation::nonce_store::parse_nonce;
use wg_pkcs11::key::attest::attest;
use wg_pkcs11::uri::Pkcs11Uri;

pub fn run(args: &AttestArgs) -> Result<(), String> {
    let uri = args.uri.as_str();
    let nonce = parse_nonce(&args.nonce)?;
    if !uri.starts_with("pkcs11:") {
        // Most likely a config's base64 PrivateKey: say so rather than only "not a URI".
        return Err(
            "a software key (not a pkcs11: URI) cannot be attested: only a key generated \
                    in the chip can prove where it lives"
                .into(),
        );
    }
    let uri = Pkcs11Uri::parse(uri).map_err(|e| format!("`{uri}`: {e}"))?;
    let evidence = attest(&uri, &nonce).map_err(|e| e.to_string())?;
    print!("{}", evidence.to_json());
    Ok(())
}

/// For `rotate`: when `WG_ROTATE_ATTEST_NONCE_CMD` is set (a command that prints a nonce from
/// the server, e.g. `ssh server wg-pkcs11 nonce`), the new key is attested with that nonce and
/// the hook gets `WG_ROTATE_EVIDENCE` (the evidence file's path) and `WG_ROTATE_NONCE`, so that
/// a server can require attestation for rotated keys too. The returned file lives until
/// dropped (after the hook ran).
pub fn add_rotation_evidence(
    new_uri: &Pkcs11Uri,
    env: &mut Vec<(&'static str, String)>,
) -> Result<Option<tempfile_free::EvidenceFile>, String> {
    let Ok(command) = std::env::var("WG_ROTATE_ATTEST_NONCE_CMD") else {
        return Ok(None);
    };
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &command])
        .output()
        .map_err(|e| format!("cannot run WG_ROTATE_ATTEST_NONCE_CMD: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "WG_ROTATE_ATTEST_NONCE_CMD failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let nonce = parse_nonce(&text)?;
    let evidence = attest(new_uri, &nonce).map_err(|e| e.to_string())?;
    let file = tempfile_free::EvidenceFile::write(&evidence.to_json())?;
    env.push(("WG_ROTATE_EVIDENCE", file.path.display().to_string()));
    env.push(("WG_ROTATE_NONCE", text));
    Ok(Some(file))
}

/// A private file removed when dropped (no tempfile crate in the binary's dependencies).
mod tempfile_free {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::PathBuf;

    pub struct EvidenceFile {
        pub path: PathBuf,
    }

    impl EvidenceFile {
        pub fn write(text: &str) -> Result<EvidenceFile, String> {
            let dir = std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let path = dir.join(format!("wg-pkcs11-evidence-{}.json", std::process::id()));
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            file.write_all(text.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(EvidenceFile { path })
        }
    }

    impl Drop for EvidenceFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
