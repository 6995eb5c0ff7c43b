//! The virtual chip's attestation: its provisioned key and certificate, and the bytes the
//! attested read signs.
//!
//! Provisioning, as on a real chip (AN12436: NXP provisions an ECC attestation key pair and its
//! certificate): a NIST P-256 key pair at [`ATTESTATION_KEY`] (0xF0000012) and its X.509
//! certificate (DER) in a binary file at [`ATTESTATION_CERTIFICATE`] (0xF0000013). The
//! certificate is issued by a test root that belongs to this one virtual chip, made with it; the
//! root's certificate is written beside the state file as `<state>.attestation-root.pem`, and
//! its private key is dropped as soon as the attestation certificate is signed (nothing else is
//! ever signed by it, so it is not kept anywhere). It is never NXP's.
//!
//! What is signed (ECDSA with SHA-256 over the message, DER signature: the attestation
//! algorithm `kSE05x_AttestationAlgo_EC_SHA_256`), as NXP's middleware verifies it
//! (NXP/plug-and-trust @ 9721d640, fsl_sss_se05x_apis.c `nxECKey_ReadEckaPublicKey` +
//! `nxECKey_VerifyAttestation`; the se05x_ReadWithAttestation demo):
//! - applet 3.x: the values, concatenated without tags: data || attributes || timestamp (12) ||
//!   freshness (16) || chip unique id (18);
//! - applet 7.2 and later: SHA-256(command APDU) || 41 82 LL LL data || 42 82 00 12 chip id ||
//!   43 82 LL LL attributes || 44 82 00 02 object size || 4F 82 00 0C timestamp, every TLV with
//!   the 3-byte length form (`add_taglength_to_data(..., extendedLength = true)`), whatever form
//!   the answer itself used; the command APDU as the middleware rebuilds it:
//!   CLA INS P1 P2 00 00 Lc data (`pCmdapdu[4] = pCmdapdu[5] = 0`, `pCmdapdu[6] = cmdbufLen`), no
//!   Le. The 41 TLV is left out when the answer carries no data (a private key).

use crate::protocol::*;
use crate::store::{ObjectData, SecureObject};
use p256::pkcs8::EncodePrivateKey;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// What provisioning made: the two objects and the root certificate (PEM) for the verifier.
pub struct Provisioned {
    pub key: SecureObject,
    pub certificate: SecureObject,
    pub root_pem: String,
}

/// The attestation key's policy: everyone may read its public key and use it to attest
/// (`POLICY_OBJ_ALLOW_ATTESTATION`, which fsl_sss_policy.h puts among the asymmetric key's
/// rights: "can_Attest: Allow to attest an object"); nobody may sign, derive, write or delete
/// with it.
pub fn attestation_key_policy() -> Vec<u8> {
    let mut policy = vec![8];
    policy.extend_from_slice(&0u32.to_be_bytes());
    policy.extend_from_slice(&(POLICY_ALLOW_READ | POLICY_ALLOW_ATTESTATION).to_be_bytes());
    policy
}

/// A new attestation key pair, its certificate, and the test root that issued it.
pub fn provision(unique_id: &[u8]) -> Result<Provisioned, String> {
    let id_hex: String = unique_id.iter().map(|b| format!("{b:02X}")).collect();
    let error = |e: rcgen::Error| format!("attestation certificate: {e}");

    let root_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(error)?;
    let mut root = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(error)?;
    root.distinguished_name = name(&format!("Virtual SE050 test attestation root {id_hex}"));
    root.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    root.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let root_cert = root.self_signed(&root_key).map_err(error)?;

    let (private, public) = crate::ec::p256_generate();
    let secret = p256::SecretKey::from_slice(private.as_slice())
        .map_err(|e| format!("attestation key: {e}"))?;
    let pkcs8 = secret
        .to_pkcs8_der()
        .map_err(|e| format!("attestation key: {e}"))?;
    let subject_key = rcgen::KeyPair::try_from(pkcs8.as_bytes()).map_err(error)?;
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(error)?;
    leaf.distinguished_name = name(&format!("Virtual SE050 attestation key {id_hex}"));
    leaf.is_ca = rcgen::IsCa::ExplicitNoCa;
    leaf.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    // `openssl verify -x509_strict` wants the issuer named by its key identifier.
    leaf.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf
        .signed_by(&subject_key, &root_cert, &root_key)
        .map_err(error)?;
    // The root's private key goes out of scope here: it signed this one certificate only.
    drop(root_key);

    Ok(Provisioned {
        key: SecureObject {
            data: ObjectData::P256Pair { private, public },
            policy: Some(attestation_key_policy()),
            origin: ORIGIN_PROVISIONED,
            creator: 0,
        },
        certificate: SecureObject {
            data: ObjectData::BinaryFile {
                data: leaf_cert.der().to_vec(),
            },
            policy: None,
            origin: ORIGIN_PROVISIONED,
            creator: 0,
        },
        root_pem: root_cert.pem(),
    })
}

fn name(common_name: &str) -> rcgen::DistinguishedName {
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::OrganizationName, "se050-sim (not NXP)");
    name.push(rcgen::DnType::CommonName, common_name);
    name
}

/// The parts of an attested read's answer that the signature covers.
pub struct Attested<'a> {
    /// The object's contents (`None`: not readable, no TAG_1 in the answer).
    pub data: Option<&'a [u8]>,
    pub attributes: &'a [u8],
    pub timestamp: &'a [u8; TIMESTAMP_LEN],
    pub chip_id: &'a [u8],
}

/// The message an applet 3.x signs.
pub fn message_3x(parts: &Attested, freshness: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(parts.data.unwrap_or(&[]));
    out.extend_from_slice(parts.attributes);
    out.extend_from_slice(parts.timestamp);
    out.extend_from_slice(freshness);
    out.extend_from_slice(parts.chip_id);
    out
}

/// The message an applet 7.2+ signs; `command` is the command data field (the TLVs) and header.
pub fn message_7x(parts: &Attested, header: [u8; 4], command: &[u8], object_size: u16) -> Vec<u8> {
    let mut apdu = header.to_vec();
    apdu.extend_from_slice(&[0x00]);
    apdu.extend_from_slice(&(command.len() as u16).to_be_bytes());
    apdu.extend_from_slice(command);
    let mut out = Sha256::digest(&apdu).to_vec();
    let mut tlv = |tag: u8, value: &[u8]| {
        out.push(tag);
        out.push(0x82);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
    };
    if let Some(data) = parts.data {
        tlv(TAG_1, data);
    }
    tlv(TAG_2, parts.chip_id);
    tlv(TAG_3, parts.attributes);
    tlv(TAG_4, &object_size.to_be_bytes());
    tlv(TAG_TIMESTAMP, parts.timestamp);
    out
}

/// ECDSA-SHA-256 over `message` with the attestation key, DER.
pub fn sign(private: &Zeroizing<[u8; 32]>, message: &[u8]) -> Option<Vec<u8>> {
    crate::ec::p256_sign_prehash(private, &Sha256::digest(message))
}
