//! The value `CKM_SE050_ATTEST` returns (pkcs11-se050 token/attest.rs):
//! `"SE050ATT" | 01 | applet major | u32 len, command | u32 len, response | count |
//! count x (u32 len, certificate DER)`, lengths big-endian.

use super::chip_response::Layout;
use super::Refusal;

pub struct TokenAttestation {
    pub layout: Layout,
    pub command: Vec<u8>,
    pub response: Vec<u8>,
    pub certificates: Vec<Vec<u8>>,
}

pub fn parse(blob: &[u8]) -> Result<TokenAttestation, Refusal> {
    let bad = |why: &str| Refusal::Malformed(format!("the token's attestation: {why}"));
    let rest = blob
        .strip_prefix(b"SE050ATT")
        .ok_or_else(|| bad("no SE050ATT header"))?;
    let [version, major, rest @ ..] = rest else {
        return Err(bad("truncated"));
    };
    if *version != 1 {
        return Err(bad(&format!("version {version} (this wg-pkcs11 reads 1)")));
    }
    let layout = if *major >= 7 {
        Layout::Applet7
    } else {
        Layout::Applet3
    };
    let mut rest = rest;
    let take = |rest: &mut &[u8]| -> Result<Vec<u8>, Refusal> {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("truncated"))?;
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return Err(bad("truncated"));
        }
        let (value, tail) = tail.split_at(len);
        *rest = tail;
        Ok(value.to_vec())
    };
    let command = take(&mut rest)?;
    let response = take(&mut rest)?;
    let (&count, mut rest) = rest.split_first().ok_or_else(|| bad("truncated"))?;
    let mut certificates = Vec::new();
    for _ in 0..count {
        certificates.push(take(&mut rest)?);
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(TokenAttestation {
        layout,
        command,
        response,
        certificates,
    })
}
