//! `attest URI --nonce HEX`: the device's evidence (JSON, attestation/evidence.rs) on stdout:
//! the WireGuard public key, the chip's attested read of the key exactly as exchanged, and the
//! chip's certificate chain, answering the server's nonce (`wg-pkcs11 nonce` on the server).

use wg_pkcs11::attestation::nonce_store::parse_nonce;
use wg_pkcs11::key::attest::attest;
use wg_pkcs11::uri::Pkcs11Uri;

pub fn run(args: &[&str]) -> Result<(), String> {
    let (uri, nonce) = match args {
        [uri, "--nonce", nonce] | ["--nonce", nonce, uri] => (*uri, *nonce),
        _ => return Err("usage: wg-pkcs11 attest URI --nonce HEX".into()),
    };
    let nonce = parse_nonce(nonce)?;
    let uri = Pkcs11Uri::parse(uri).map_err(|e| format!("`{uri}`: {e}"))?;
    let evidence = attest(&uri, &nonce).map_err(|e| e.to_string())?;
    print!("{}", evidence.to_json());
    Ok(())
}
