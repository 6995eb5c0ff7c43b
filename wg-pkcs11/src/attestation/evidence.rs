//! The evidence file (`wg-pkcs11 attest` writes it, `verify-attestation` reads it): one JSON
//! object, versioned, binary parts in hex (APDUs) or base64 (keys, certificates):
//!
//! ```json
//! { "format": "wg-pkcs11-attestation", "version": 1,
//!   "wireguard_public_key": "<base64, 32 bytes>",
//!   "layout": "se05x-applet-3" | "se05x-applet-7",
//!   "command": "<hex: the attested ReadObject APDU as sent>",
//!   "response": "<hex: the chip's answer as received, status word included>",
//!   "certificates": ["<base64 DER>", ...] }
//! ```
//! `certificates` is the chain as read from the chip, the attestation key's certificate first.
//! Unknown fields are refused (a later version adds them with a new `version`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::chip_response::Layout;
use super::Refusal;

pub const FORMAT: &str = "wg-pkcs11-attestation";
pub const VERSION: u32 = 1;
/// Larger files are refused before parsing.
pub const MAX_EVIDENCE_BYTES: usize = 64 * 1024;
const MAX_CERTIFICATES: usize = 8;
const MAX_APDU: usize = 65_538;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub wireguard_public_key: [u8; 32],
    pub layout: Layout,
    pub command: Vec<u8>,
    pub response: Vec<u8>,
    pub certificates: Vec<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    format: String,
    version: u32,
    wireguard_public_key: String,
    layout: String,
    command: String,
    response: String,
    certificates: Vec<String>,
}

#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    version: Option<serde_json::Value>,
}

impl Evidence {
    pub fn to_json(&self) -> String {
        let wire = Wire {
            format: FORMAT.into(),
            version: VERSION,
            wireguard_public_key: B64.encode(self.wireguard_public_key),
            layout: self.layout.name().into(),
            command: hex(&self.command),
            response: hex(&self.response),
            certificates: self.certificates.iter().map(|c| B64.encode(c)).collect(),
        };
        let mut text = serde_json::to_string_pretty(&wire).expect("plain strings serialize");
        text.push('\n');
        text
    }

    pub fn parse(bytes: &[u8]) -> Result<Evidence, Refusal> {
        let bad = |why: String| Refusal::Malformed(why);
        if bytes.len() > MAX_EVIDENCE_BYTES {
            return Err(bad(format!(
                "{} bytes, more than the {MAX_EVIDENCE_BYTES} an evidence file may have",
                bytes.len()
            )));
        }
        let header: Header =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a JSON object: {e}")))?;
        if header.format.as_deref() != Some(FORMAT) {
            return Err(bad(format!("\"format\" is not \"{FORMAT}\"")));
        }
        match header.version {
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(VERSION as u64) => {}
            Some(other) => {
                return Err(bad(format!(
                    "version {other} (this wg-pkcs11 reads version {VERSION})"
                )))
            }
            None => return Err(bad("no \"version\"".into())),
        }
        let wire: Wire = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let key = B64
            .decode(&wire.wireguard_public_key)
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or_else(|| bad("wireguard_public_key is not 32 bytes in base64".into()))?;
        let layout = Layout::from_name(&wire.layout)
            .ok_or_else(|| bad(format!("unknown layout {:?}", wire.layout)))?;
        let command = unhex(&wire.command).ok_or_else(|| bad("command is not hex".into()))?;
        let response = unhex(&wire.response).ok_or_else(|| bad("response is not hex".into()))?;
        if command.len() > MAX_APDU || response.len() > MAX_APDU {
            return Err(bad("an APDU is longer than any the chip exchanges".into()));
        }
        if wire.certificates.is_empty() || wire.certificates.len() > MAX_CERTIFICATES {
            return Err(bad(format!(
                "{} certificates (1 to {MAX_CERTIFICATES} expected)",
                wire.certificates.len()
            )));
        }
        let certificates = wire
            .certificates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                B64.decode(c)
                    .map_err(|_| bad(format!("certificate {i} is not base64")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Evidence {
            wireguard_public_key: key,
            layout,
            command,
            response,
            certificates,
        })
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Evidence {
        Evidence {
            wireguard_public_key: [7; 32],
            layout: Layout::Applet3,
            command: vec![0x80, 0x22, 0, 0],
            response: vec![0x90, 0],
            certificates: vec![vec![0x30, 0]],
        }
    }

    #[test]
    fn round_trip() {
        let e = sample();
        assert_eq!(Evidence::parse(e.to_json().as_bytes()).unwrap(), e);
    }

    #[test]
    fn bad_input_gets_a_clear_error() {
        let json = sample().to_json();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                json.as_bytes()[..json.len() / 2].to_vec(),
                "not a JSON object",
            ),
            (
                json.replace("\"version\": 1", "\"version\": 2")
                    .into_bytes(),
                "version 2",
            ),
            (
                json.replace("wg-pkcs11-attestation", "x").into_bytes(),
                "format",
            ),
            (
                json.replace("8022", "80zz").into_bytes(),
                "command is not hex",
            ),
            (vec![b' '; MAX_EVIDENCE_BYTES + 1], "more than"),
            (
                json.replace("\"layout\"", "\"extra\": 1, \"layout\"")
                    .into_bytes(),
                "unknown field",
            ),
        ];
        for (input, expected) in cases {
            let err = Evidence::parse(&input).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected:?} not in {err:?}");
        }
    }
}
