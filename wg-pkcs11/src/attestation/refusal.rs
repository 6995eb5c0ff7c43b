//! Why evidence was refused: one variant per check, so that each test names the check it
//! expects to fail and the command line prints the exact reason.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The evidence file is not well-formed (JSON, encodings, sizes, version).
    Malformed(String),
    /// The command in the evidence is not an attested ReadObject as this verifier knows it.
    BadCommand(String),
    /// The chip's answer does not parse as an attested ReadObject response.
    BadResponse(String),
    /// A certificate does not parse, or is not the kind the chain needs.
    BadCertificate(String),
    /// The chain does not end at a configured root.
    UnknownRoot(String),
    /// A certificate is outside its validity period.
    Expired(String),
    /// A certificate's signature, key usage or CA flag is wrong.
    ChainInvalid(String),
    /// The chip's signature does not verify with the attestation certificate's key.
    BadSignature,
    /// The freshness value is not the nonce, or the nonce was not issued, expired or used.
    Nonce(String),
    /// The attested object's public key is not the WireGuard key of the evidence.
    KeyMismatch(String),
    /// The object was not generated inside the chip.
    Origin(String),
    /// The object's policy allows export, or key agreement outside the PIN session.
    Policy(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Malformed(why) => write!(f, "malformed evidence: {why}"),
            Refusal::BadCommand(why) => write!(f, "attestation command refused: {why}"),
            Refusal::BadResponse(why) => write!(f, "chip response refused: {why}"),
            Refusal::BadCertificate(why) => write!(f, "certificate refused: {why}"),
            Refusal::UnknownRoot(why) => write!(f, "untrusted chain: {why}"),
            Refusal::Expired(why) => write!(f, "certificate not valid now: {why}"),
            Refusal::ChainInvalid(why) => write!(f, "certificate chain invalid: {why}"),
            Refusal::BadSignature => write!(
                f,
                "the chip's signature does not verify over the attested bytes with the \
                 attestation certificate's key"
            ),
            Refusal::Nonce(why) => write!(f, "freshness: {why}"),
            Refusal::KeyMismatch(why) => write!(f, "key mismatch: {why}"),
            Refusal::Origin(why) => write!(f, "origin: {why}"),
            Refusal::Policy(why) => write!(f, "policy: {why}"),
        }
    }
}

impl std::error::Error for Refusal {}
