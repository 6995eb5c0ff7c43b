//! `genkey`, `pubkey`: keys in the token, printed as WireGuard prints keys (base64).

use std::io::Read;

use base64::Engine;
use wg_pkcs11::config::decode_key;
use wg_pkcs11::key::token;
use wg_pkcs11::uri::Pkcs11Uri;
use zeroize::Zeroizing;

fn b64(key: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

fn parse_uri(text: &str) -> Result<Pkcs11Uri, String> {
    Pkcs11Uri::parse(text).map_err(|e| format!("`{text}`: {e}"))
}

pub fn genkey(uri: &str) -> Result<(), String> {
    let uri = parse_uri(uri)?;
    let public = token::genkey(&uri).map_err(|e| e.to_string())?;
    println!("{}", b64(&public));
    Ok(())
}

pub fn pubkey(uri: &str) -> Result<(), String> {
    let uri = parse_uri(uri)?;
    let public = token::pubkey(&uri).map_err(|e| e.to_string())?;
    println!("{}", b64(&public));
    Ok(())
}

/// Like `wg pubkey`: a base64 private key on stdin, its public key on stdout.
pub fn pubkey_from_stdin() -> Result<(), String> {
    let mut input = Zeroizing::new(String::new());
    std::io::stdin()
        .take(1024)
        .read_to_string(&mut input)
        .map_err(|e| format!("reading stdin: {e}"))?;
    let private = Zeroizing::new(
        decode_key("private key on stdin", input.trim()).map_err(|e| e.to_string())?,
    );
    let secret = x25519_dalek::StaticSecret::from(*private);
    println!("{}", b64(x25519_dalek::PublicKey::from(&secret).as_bytes()));
    Ok(())
}
