//! Tests only: evidence as a chip would produce it, built from a test root, an intermediate and
//! an attestation key (rcgen, p256), in either applet layout, with each part adjustable.

use p256::ecdsa::signature::Signer;
use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use sha2::{Digest, Sha256};

use super::chain::Cert;
use super::chip_response::{AttestedReadCommand, Layout};
use super::evidence::Evidence;
use super::object_attributes::{ORIGIN_INTERNAL, POLICY_ALLOW_ATTESTATION, POLICY_ALLOW_KA};

pub const KEY_ID: u32 = 0x7000_0010;
pub const ATTESTATION_KEY_ID: u32 = 0xF000_0012;
pub const USER_PIN: u32 = 0x7AFF_0001;
pub const CHIP_ID: [u8; 18] = [
    0x04, 0x00, 0x50, 0x01, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
    0x66, 0x77,
];
pub const NOW: u64 = 1_800_000_000; // 2027-01-15

pub struct TestPki {
    pub root_pem: String,
    pub intermediate_der: Vec<u8>,
    pub leaf_der: Vec<u8>,
    pub attestation_key: SigningKey,
    inter: (rcgen::Certificate, KeyPair),
    leaf: (rcgen::Certificate, KeyPair),
}

fn ca_params(name: &str, from: i32, to: i32) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(to, 1, 1);
    params
}

impl TestPki {
    /// Root (2020-2040) -> intermediate (2020-2035) -> attestation certificate (2021-2035).
    pub fn new(root_name: &str) -> TestPki {
        TestPki::with_leaf_years(root_name, 2021, 2035)
    }

    pub fn with_leaf_years(root_name: &str, from: i32, to: i32) -> TestPki {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let root = ca_params(root_name, 2020, 2040)
            .self_signed(&root_key)
            .unwrap();
        let inter_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let inter = ca_params("Test Intermediate-AttestationCA", 2020, 2035)
            .signed_by(&inter_key, &root, &root_key)
            .unwrap();
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut leaf_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "Attest-test-chip");
        // rcgen writes extensions (key usage among them) only when something else asks for
        // them: ExplicitNoCa (basicConstraints CA:FALSE) does.
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.not_before = rcgen::date_time_ymd(from, 1, 1);
        leaf_params.not_after = rcgen::date_time_ymd(to, 1, 1);
        let leaf = leaf_params
            .signed_by(&leaf_key, &inter, &inter_key)
            .unwrap();
        TestPki {
            root_pem: root.pem(),
            intermediate_der: inter.der().to_vec(),
            leaf_der: leaf.der().to_vec(),
            attestation_key: SigningKey::from_pkcs8_der(&leaf_key.serialize_der()).unwrap(),
            inter: (inter, inter_key),
            leaf: (leaf, leaf_key),
        }
    }

    /// A certificate for a new key, issued by the attestation certificate (not a CA) when
    /// `by_leaf`, else by the intermediate with `usages`; its DER and its key.
    pub fn issue(&self, by_leaf: bool, usages: Vec<KeyUsagePurpose>) -> (Vec<u8>, SigningKey) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Attest-forged");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = usages;
        params.not_before = rcgen::date_time_ymd(2021, 1, 1);
        params.not_after = rcgen::date_time_ymd(2035, 1, 1);
        let (issuer, issuer_key) = if by_leaf { &self.leaf } else { &self.inter };
        let cert = params.signed_by(&key, issuer, issuer_key).unwrap();
        (
            cert.der().to_vec(),
            SigningKey::from_pkcs8_der(&key.serialize_der()).unwrap(),
        )
    }

    pub fn roots(&self) -> Vec<Cert> {
        Cert::from_pem(&self.root_pem).unwrap()
    }
}

/// The attested object as the test chip holds it.
pub struct TestKey {
    /// RFC 7748 order (WireGuard's).
    pub public: [u8; 32],
    pub object_id: u32,
    pub policy: Vec<(u32, u32)>,
    pub origin: u8,
    pub class: u8,
}

impl TestKey {
    /// A key generated under a user PIN, as the module makes them.
    pub fn pin_protected() -> TestKey {
        TestKey {
            public: [0x42; 32],
            object_id: KEY_ID,
            policy: vec![
                (
                    USER_PIN,
                    POLICY_ALLOW_KA | 0x0020_0000 | 0x0004_0000 | POLICY_ALLOW_ATTESTATION,
                ),
                (0, 0x0004_0000 | POLICY_ALLOW_ATTESTATION),
            ],
            origin: ORIGIN_INTERNAL,
            class: 0x01,
        }
    }

    pub fn attributes(&self) -> Vec<u8> {
        let mut out = self.object_id.to_be_bytes().to_vec();
        out.extend_from_slice(&[self.class, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        for (auth, access) in &self.policy {
            out.push(8);
            out.extend_from_slice(&auth.to_be_bytes());
            out.extend_from_slice(&access.to_be_bytes());
        }
        out.push(self.origin);
        out
    }

    pub fn chip_order(&self) -> Vec<u8> {
        self.public.iter().rev().copied().collect()
    }
}

fn tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    match value.len() {
        0..=0x7F => out.push(value.len() as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, value.len() as u8]),
        n => {
            out.push(0x82);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(value);
}

/// The chip's answer to `command` for `key`, signed with `signer`, in `layout`.
pub fn answer(
    layout: Layout,
    command: &[u8],
    key: &TestKey,
    signer: &SigningKey,
    signed_freshness: [u8; 16],
) -> Vec<u8> {
    let parsed = AttestedReadCommand::parse(command).unwrap();
    let timestamp = [0, 0, 0, 0x2C, 0, 0, 0, 0, 0x00, 0x18, 0x98, 0xE0];
    let data = key.chip_order();
    let attributes = key.attributes();
    let mut out = Vec::new();
    let message = match layout {
        Layout::Applet3 => {
            tlv(&mut out, 0x41, &data);
            tlv(&mut out, 0x42, &attributes);
            tlv(&mut out, 0x43, &timestamp);
            tlv(&mut out, 0x44, &signed_freshness);
            tlv(&mut out, 0x45, &CHIP_ID);
            [
                &data[..],
                &attributes,
                &timestamp,
                &signed_freshness,
                &CHIP_ID,
            ]
            .concat()
        }
        Layout::Applet7 => {
            let size = [0x00, 0x20];
            let mut message = Sha256::digest(parsed.signed_form()).to_vec();
            for (tag, value) in [
                (0x41, &data[..]),
                (0x42, &CHIP_ID),
                (0x43, &attributes),
                (0x44, &size),
                (0x4F, &timestamp),
            ] {
                tlv(&mut out, tag, value);
                message.push(tag);
                message.push(0x82);
                message.extend_from_slice(&(value.len() as u16).to_be_bytes());
                message.extend_from_slice(value);
            }
            message
        }
    };
    let signature: p256::ecdsa::Signature = signer.sign(&message);
    let tag = if layout == Layout::Applet3 {
        0x46
    } else {
        0x52
    };
    tlv(&mut out, tag, signature.to_der().as_bytes());
    out.extend_from_slice(&[0x90, 0x00]);
    out
}

/// Evidence for `key` from the test chip of `pki`, answering `nonce`.
pub fn evidence(layout: Layout, pki: &TestPki, key: &TestKey, nonce: [u8; 16]) -> Evidence {
    let command = AttestedReadCommand::encode(key.object_id, ATTESTATION_KEY_ID, &nonce);
    let response = answer(layout, &command, key, &pki.attestation_key, nonce);
    Evidence {
        wireguard_public_key: key.public,
        layout,
        command,
        response,
        certificates: vec![pki.leaf_der.clone(), pki.intermediate_der.clone()],
    }
}
