//! The verifier: every check on one evidence file, in order, each with its own refusal.
//!
//! 1. the command is an attested ReadObject with ECDSA/SHA-256 ([`chip_response`]);
//! 2. the chain up to a configured root, dates, key usage ([`chain`]);
//! 3. the chip's signature over exactly the bytes the chip signed;
//! 4. freshness: the command's (and, applet 3.x, the signed) freshness value is the nonce;
//! 5. the attested object is the one the command named, an EC key pair;
//! 6. its public key is the WireGuard key of the evidence;
//! 7. origin: generated inside the chip; 8. policy: no export, key agreement only in the PIN
//!    session where a PIN is set ([`object_attributes`]).
//!
//! That the nonce was issued and is used once is the caller's part ([`super::nonce_store`]):
//! it is consumed before this runs.

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::Signature;

use super::chain::{verify_chain, Cert, VerifiedChain};
use super::chip_response::{AttestedRead, AttestedReadCommand};
use super::evidence::{hex, Evidence};
use super::object_attributes::{KeyAgreement, SignedAttributes, CLASS_EC_KEY_PAIR};
use super::Refusal;

pub struct VerifyOptions<'a> {
    pub roots: &'a [Cert],
    pub intermediates: &'a [Cert],
    pub now_unix: u64,
    pub nonce: [u8; 16],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub wireguard_public_key: [u8; 32],
    pub chip_id: Vec<u8>,
    pub object_id: u32,
    pub key_agreement: KeyAgreement,
    pub chain: Vec<String>,
}

impl Verified {
    /// What `verify-attestation` prints after the key.
    pub fn report(&self) -> Vec<String> {
        vec![
            format!("chip-id {}", hex(&self.chip_id).to_uppercase()),
            format!("object {:08X}", self.object_id),
            format!("chain {}", self.chain.join(" <- ")),
            "signature ok (ECDSA P-256 SHA-256 over the chip's attested read)".into(),
            "freshness ok (the nonce, used once)".into(),
            "key ok (the attested object's public key is the WireGuard key)".into(),
            "origin ok (generated inside the chip)".into(),
            match &self.key_agreement {
                KeyAgreement::Anyone => {
                    "policy ok (no export; no PIN: key agreement for whoever reaches the chip)"
                        .into()
                }
                KeyAgreement::OnlyIn(ids) => format!(
                    "policy ok (no export; key agreement only in the session of {})",
                    super::object_attributes::ids(ids)
                ),
            },
        ]
    }
}

/// What [`authenticate`] established: the chip's answer is genuine and fresh.
pub struct Authentic {
    pub command: AttestedReadCommand,
    pub read: AttestedRead,
    pub chain: VerifiedChain,
}

/// Checks 1-4: the command, the chain, the chip's signature, the freshness value.
pub fn authenticate(evidence: &Evidence, options: &VerifyOptions) -> Result<Authentic, Refusal> {
    let command = AttestedReadCommand::parse(&evidence.command)?;
    let read = AttestedRead::parse(evidence.layout, &evidence.response, &command)?;
    let chain = verify_chain(
        &evidence.certificates,
        options.intermediates,
        options.roots,
        options.now_unix,
    )?;
    let signature = Signature::from_der(&read.signature).map_err(|_| Refusal::BadSignature)?;
    chain
        .attestation_key
        .verify(&read.signed_message, &signature)
        .map_err(|_| Refusal::BadSignature)?;
    if command.freshness != options.nonce {
        return Err(Refusal::Nonce(format!(
            "the chip was asked with freshness {}, not the nonce {}",
            hex(&command.freshness),
            hex(&options.nonce)
        )));
    }
    if let Some(signed) = read.freshness {
        if signed != options.nonce {
            return Err(Refusal::Nonce(format!(
                "the chip signed freshness {}, not the nonce {}",
                hex(&signed),
                hex(&options.nonce)
            )));
        }
    }
    Ok(Authentic {
        command,
        read,
        chain,
    })
}

/// All checks; the admitted key and what was verified, or the first refusal.
pub fn verify(evidence: &Evidence, options: &VerifyOptions) -> Result<Verified, Refusal> {
    let Authentic {
        command,
        read,
        chain,
    } = authenticate(evidence, options)?;
    let attributes = SignedAttributes::parse(&read.attributes)?;
    if attributes.object_id != command.object_id {
        return Err(Refusal::KeyMismatch(format!(
            "the chip attested object {:08X}, the command asked for {:08X}",
            attributes.object_id, command.object_id
        )));
    }
    if attributes.class != CLASS_EC_KEY_PAIR {
        return Err(Refusal::KeyMismatch(format!(
            "object {:08X} is of class {:02X}, not an EC key pair",
            attributes.object_id, attributes.class
        )));
    }
    let data = read.data.as_deref().ok_or_else(|| {
        Refusal::KeyMismatch("the chip returned no public key (the object is not readable)".into())
    })?;
    // The chip holds X25519 values big-endian; WireGuard's key is RFC 7748 little-endian.
    let mut attested: Vec<u8> = data.to_vec();
    attested.reverse();
    if attested != evidence.wireguard_public_key {
        return Err(Refusal::KeyMismatch(format!(
            "the attested public key ({} bytes) is not the WireGuard key",
            data.len()
        )));
    }
    attributes.check_origin()?;
    let key_agreement = attributes.check_policy()?;
    Ok(Verified {
        wireguard_public_key: evidence.wireguard_public_key,
        chip_id: read.chip_id,
        object_id: attributes.object_id,
        key_agreement,
        chain: chain.path,
    })
}
