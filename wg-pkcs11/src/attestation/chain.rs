//! The attestation key's certificate chain, checked up to a configured root: each link's
//! ECDSA signature (SHA-256/384/512; issuer keys P-256, P-384 or P-521: NXP's RootCAvE506 is a
//! P-521 key that signs with SHA-512 itself and the intermediate with SHA-256; the attestation
//! key itself must be P-256), issuer and subject names, validity dates (every certificate,
//! the root included), the CA flag and keyCertSign on every issuer, digitalSignature on the
//! attestation certificate, and no critical extension this code does not understand.
//!
//! NXP's certificates write ecdsa-with-SHA256 with explicit NULL parameters (seen in NXP's
//! RootCAvE506 chain; Worldcoin's orb-software accepts them the same way), so absent and NULL
//! parameters are both accepted.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::Certificate;

use super::Refusal;

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
/// Longest chain accepted (attestation certificate, intermediates, root).
const MAX_DEPTH: usize = 6;

/// A certificate's public key.
#[derive(Clone)]
pub enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(Box<p521::ecdsa::VerifyingKey>),
}

impl PublicKey {
    /// Verifies a DER ECDSA signature over `prehash` (a digest of the signed bytes).
    fn verify_prehash(&self, prehash: &[u8], der_signature: &[u8]) -> bool {
        // SEC 1: a digest shorter than the order is taken whole as an integer; RustCrypto
        // wants at least half the field size, so it is left-padded (same integer).
        let padded = |size: usize| {
            let mut p = vec![0u8; size.saturating_sub(prehash.len())];
            p.extend_from_slice(prehash);
            p
        };
        match self {
            PublicKey::P256(k) => p256::ecdsa::Signature::from_der(der_signature)
                .is_ok_and(|s| k.verify_prehash(&padded(32), &s).is_ok()),
            PublicKey::P384(k) => p384::ecdsa::Signature::from_der(der_signature)
                .is_ok_and(|s| k.verify_prehash(&padded(48), &s).is_ok()),
            PublicKey::P521(k) => p521::ecdsa::Signature::from_der(der_signature)
                .is_ok_and(|s| k.verify_prehash(&padded(66), &s).is_ok()),
        }
    }
}

/// A parsed certificate with what the chain checks need.
#[derive(Clone)]
pub struct Cert {
    pub der: Vec<u8>,
    pub cert: Certificate,
    pub key: PublicKey,
}

impl Cert {
    pub fn from_der(der: &[u8]) -> Result<Cert, Refusal> {
        let cert = Certificate::from_der(der)
            .map_err(|e| Refusal::BadCertificate(format!("not a DER X.509 certificate: {e}")))?;
        let spki = &cert.tbs_certificate.subject_public_key_info;
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        let invalid =
            || Refusal::BadCertificate(format!("{}: its EC public key is invalid", subject(&cert)));
        let bytes = spki.subject_public_key.as_bytes().ok_or_else(invalid)?;
        let key = match (spki.algorithm.oid == EC_PUBLIC_KEY, curve) {
            (true, Some(PRIME256V1)) => PublicKey::P256(
                p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(|_| invalid())?,
            ),
            (true, Some(SECP384R1)) => PublicKey::P384(
                p384::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(|_| invalid())?,
            ),
            (true, Some(SECP521R1)) => PublicKey::P521(Box::new(
                p521::ecdsa::VerifyingKey::from_sec1_bytes(bytes).map_err(|_| invalid())?,
            )),
            _ => {
                return Err(Refusal::BadCertificate(format!(
                    "{}: its key is not an ECDSA key on P-256, P-384 or P-521",
                    subject(&cert)
                )))
            }
        };
        Ok(Cert {
            der: der.to_vec(),
            cert,
            key,
        })
    }

    pub fn from_pem(pem: &str) -> Result<Vec<Cert>, Refusal> {
        let certs = Certificate::load_pem_chain(pem.as_bytes())
            .map_err(|e| Refusal::BadCertificate(format!("not PEM certificates: {e}")))?;
        certs
            .iter()
            .map(|c| {
                let der = c
                    .to_der()
                    .map_err(|e| Refusal::BadCertificate(e.to_string()))?;
                Cert::from_der(&der)
            })
            .collect()
    }

    pub fn subject(&self) -> String {
        subject(&self.cert)
    }

    fn issued(&self, issuer: &Cert) -> bool {
        self.cert.tbs_certificate.issuer == issuer.cert.tbs_certificate.subject
            && self.signed_by(&issuer.key).is_ok()
    }

    fn signed_by(&self, key: &PublicKey) -> Result<(), Refusal> {
        let alg = &self.cert.signature_algorithm;
        let null_or_absent = match &alg.parameters {
            None => true,
            Some(p) => p.is_null(),
        };
        let tbs = self
            .cert
            .tbs_certificate
            .to_der()
            .map_err(|e| Refusal::BadCertificate(e.to_string()))?;
        let prehash = match alg.oid {
            ECDSA_WITH_SHA256 if null_or_absent => Sha256::digest(&tbs).to_vec(),
            ECDSA_WITH_SHA384 if null_or_absent => Sha384::digest(&tbs).to_vec(),
            ECDSA_WITH_SHA512 if null_or_absent => Sha512::digest(&tbs).to_vec(),
            _ => {
                return Err(Refusal::ChainInvalid(format!(
                    "{} is signed with {}, not ECDSA with SHA-256/384/512",
                    self.subject(),
                    alg.oid
                )))
            }
        };
        let signature = self.cert.signature.as_bytes().unwrap_or_default();
        if key.verify_prehash(&prehash, signature) {
            Ok(())
        } else {
            Err(Refusal::ChainInvalid(format!(
                "{}: its signature does not verify",
                self.subject()
            )))
        }
    }

    fn check_validity(&self, now_unix: u64) -> Result<(), Refusal> {
        let validity = &self.cert.tbs_certificate.validity;
        let not_before = validity.not_before.to_unix_duration().as_secs();
        let not_after = validity.not_after.to_unix_duration().as_secs();
        if now_unix < not_before {
            return Err(Refusal::Expired(format!(
                "{} is valid only from {}",
                self.subject(),
                validity.not_before
            )));
        }
        if now_unix > not_after {
            return Err(Refusal::Expired(format!(
                "{} expired at {}",
                self.subject(),
                validity.not_after
            )));
        }
        Ok(())
    }

    /// The CA flag and keyCertSign (issuers), or digitalSignature where a key usage is present
    /// (the attestation certificate); unknown critical extensions refused.
    fn check_extensions(&self, as_issuer: bool) -> Result<(), Refusal> {
        let mut is_ca = false;
        let mut usage: Option<KeyUsage> = None;
        for ext in self.cert.tbs_certificate.extensions.iter().flatten() {
            let value = ext.extn_value.as_bytes();
            if ext.extn_id == BASIC_CONSTRAINTS {
                let bc = BasicConstraints::from_der(value).map_err(|_| {
                    Refusal::BadCertificate(format!("{}: bad basicConstraints", self.subject()))
                })?;
                is_ca = bc.ca;
            } else if ext.extn_id == KEY_USAGE {
                usage = Some(KeyUsage::from_der(value).map_err(|_| {
                    Refusal::BadCertificate(format!("{}: bad keyUsage", self.subject()))
                })?);
            } else if ext.critical {
                return Err(Refusal::ChainInvalid(format!(
                    "{}: unknown critical extension {}",
                    self.subject(),
                    ext.extn_id
                )));
            }
        }
        if as_issuer {
            if !is_ca {
                return Err(Refusal::ChainInvalid(format!(
                    "{} issues a certificate but is not a CA",
                    self.subject()
                )));
            }
            if let Some(usage) = usage {
                if !usage.key_cert_sign() {
                    return Err(Refusal::ChainInvalid(format!(
                        "{}: its key usage does not allow signing certificates",
                        self.subject()
                    )));
                }
            }
        } else if let Some(usage) = usage {
            if !usage.digital_signature() {
                return Err(Refusal::ChainInvalid(format!(
                    "{}: its key usage does not allow signatures",
                    self.subject()
                )));
            }
        }
        Ok(())
    }
}

fn subject(cert: &Certificate) -> String {
    format!("\"{}\"", cert.tbs_certificate.subject)
}

/// A verified chain: the attestation key and the names from it to the root.
pub struct VerifiedChain {
    pub attestation_key: p256::ecdsa::VerifyingKey,
    pub path: Vec<String>,
}

/// Checks `chain` (attestation certificate first, then the certificates the chip holds)
/// up to one of `roots`. `intermediates` are known issuers that may complete a chain the chip
/// holds only partly; they are not trusted by themselves.
pub fn verify_chain(
    chain: &[Vec<u8>],
    intermediates: &[Cert],
    roots: &[Cert],
    now_unix: u64,
) -> Result<VerifiedChain, Refusal> {
    if roots.is_empty() {
        return Err(Refusal::UnknownRoot("no root is configured".into()));
    }
    let given = chain
        .iter()
        .map(|der| Cert::from_der(der))
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = given
        .first()
        .ok_or_else(|| Refusal::BadCertificate("no attestation certificate".into()))?;
    let PublicKey::P256(attestation_key) = leaf.key.clone() else {
        return Err(Refusal::BadCertificate(format!(
            "{}: the attestation key is not a P-256 key",
            leaf.subject()
        )));
    };
    leaf.check_extensions(false)?;
    leaf.check_validity(now_unix)?;
    let candidates: Vec<&Cert> = given[1..].iter().chain(intermediates).collect();
    let mut path = vec![leaf.subject()];
    let mut current = leaf;
    for _ in 0..MAX_DEPTH {
        // A configured root that issued the current certificate ends the chain.
        if let Some(root) = roots.iter().find(|r| current.issued(r)) {
            root.check_extensions(true)?;
            root.check_validity(now_unix)?;
            if root.der != current.der {
                path.push(root.subject());
            }
            return Ok(VerifiedChain {
                attestation_key,
                path,
            });
        }
        let Some(issuer) = candidates
            .iter()
            .copied()
            .find(|c| c.der != current.der && current.issued(c))
        else {
            let issuer = format!("\"{}\"", current.cert.tbs_certificate.issuer);
            return Err(if roots.iter().any(|c| c.subject() == issuer) {
                Refusal::UnknownRoot(format!(
                    "{} names the configured root {issuer} as issuer, but that root's key \
                     did not sign it",
                    current.subject()
                ))
            } else if candidates.iter().any(|c| c.subject() == issuer) {
                Refusal::ChainInvalid(format!(
                    "{}: its signature does not verify with the key of {issuer}",
                    current.subject()
                ))
            } else {
                Refusal::UnknownRoot(format!(
                    "{} was issued by {issuer}, which leads to no configured root",
                    current.subject()
                ))
            });
        };
        issuer.check_extensions(true)?;
        issuer.check_validity(now_unix)?;
        path.push(issuer.subject());
        current = issuer;
    }
    Err(Refusal::ChainInvalid(
        "the chain is longer than allowed".into(),
    ))
}
