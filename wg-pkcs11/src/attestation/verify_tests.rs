//! The verifier against evidence from a test chip (test_chip.rs) and against a real SE050's
//! published attested read (vectors/, see vectors/SOURCES.md): each check has a test that
//! fails when the check is removed.

use super::chain::Cert;
use super::chip_response::Layout;
use super::evidence::Evidence;
use super::object_attributes::{
    KeyAgreement, ORIGIN_EXTERNAL, POLICY_ALLOW_IMPORT_EXPORT, POLICY_ALLOW_KA,
};
use super::roots;
use super::test_chip::*;
use super::verify::{authenticate, verify, VerifyOptions};
use super::Refusal;

const NONCE: [u8; 16] = [0x5A; 16];

fn check(e: &Evidence, pki: &TestPki) -> Result<super::Verified, Refusal> {
    let roots = pki.roots();
    verify(
        e,
        &VerifyOptions {
            roots: &roots,
            intermediates: &[],
            now_unix: NOW,
            nonce: NONCE,
        },
    )
}

fn kind(r: &Refusal) -> &'static str {
    match r {
        Refusal::Malformed(_) => "malformed",
        Refusal::BadCommand(_) => "command",
        Refusal::BadResponse(_) => "response",
        Refusal::BadCertificate(_) => "certificate",
        Refusal::UnknownRoot(_) => "root",
        Refusal::Expired(_) => "expired",
        Refusal::ChainInvalid(_) => "chain",
        Refusal::BadSignature => "signature",
        Refusal::Nonce(_) => "nonce",
        Refusal::KeyMismatch(_) => "key",
        Refusal::Origin(_) => "origin",
        Refusal::Policy(_) => "policy",
    }
}

fn refused(e: &Evidence, pki: &TestPki) -> &'static str {
    kind(&check(e, pki).expect_err("evidence accepted"))
}

#[test]
fn genuine_evidence_is_accepted_in_both_layouts() {
    let pki = TestPki::new("Test root");
    for layout in [Layout::Applet3, Layout::Applet7] {
        let e = evidence(layout, &pki, &TestKey::pin_protected(), NONCE);
        // Through the file format as well.
        let e = Evidence::parse(e.to_json().as_bytes()).unwrap();
        let ok = check(&e, &pki).unwrap();
        assert_eq!(ok.wireguard_public_key, [0x42; 32]);
        assert_eq!(ok.chip_id, CHIP_ID);
        assert_eq!(ok.object_id, KEY_ID);
        assert_eq!(ok.key_agreement, KeyAgreement::OnlyIn(vec![USER_PIN]));
        assert_eq!(ok.chain.len(), 3, "{:?}", ok.chain);
    }
}

#[test]
fn every_response_byte_altered_is_refused() {
    let pki = TestPki::new("Test root");
    for layout in [Layout::Applet3, Layout::Applet7] {
        let good = evidence(layout, &pki, &TestKey::pin_protected(), NONCE);
        for i in 0..good.response.len() {
            let mut e = good.clone();
            e.response[i] ^= 0x01;
            assert!(
                check(&e, &pki).is_err(),
                "{layout:?}: byte {i} altered, accepted"
            );
        }
    }
}

#[test]
fn each_evidence_field_altered_is_refused_with_its_reason() {
    let pki = TestPki::new("Test root");
    let good = evidence(Layout::Applet3, &pki, &TestKey::pin_protected(), NONCE);

    let mut e = good.clone();
    e.wireguard_public_key[0] ^= 1;
    assert_eq!(refused(&e, &pki), "key");

    let mut e = good.clone();
    e.layout = Layout::Applet7;
    assert_eq!(refused(&e, &pki), "response");

    // The command's freshness (not signed in 3.x): the signed one still differs.
    let mut e = good.clone();
    let at = e.command.len() - 3;
    e.command[at] ^= 1;
    assert_eq!(refused(&e, &pki), "nonce");

    // Another object id in the command than the chip attested.
    let mut e = good.clone();
    e.command[10] ^= 1;
    assert_eq!(refused(&e, &pki), "key");

    // The signed freshness byte in the response.
    let mut e = good.clone();
    let pos = find(&e.response, &NONCE);
    e.response[pos] ^= 1;
    assert_eq!(refused(&e, &pki), "signature");

    // The chip id.
    let mut e = good.clone();
    let pos = find(&e.response, &CHIP_ID);
    e.response[pos + 17] ^= 1;
    assert_eq!(refused(&e, &pki), "signature");

    // The attestation certificate.
    let mut e = good.clone();
    let last = e.certificates[0].len() - 1;
    e.certificates[0][last] ^= 1;
    assert_eq!(refused(&e, &pki), "chain");

    // The intermediate left out.
    let mut e = good.clone();
    e.certificates.truncate(1);
    assert_eq!(refused(&e, &pki), "root");

    // 7.x signs the command too: its freshness altered is a bad signature.
    let good7 = evidence(Layout::Applet7, &pki, &TestKey::pin_protected(), NONCE);
    let mut e = good7.clone();
    let at = e.command.len() - 3;
    e.command[at] ^= 1;
    assert_eq!(refused(&e, &pki), "signature");
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[test]
fn a_signature_from_another_chip_is_refused() {
    let pki = TestPki::new("Test root");
    let other = TestPki::new("Test root");
    let key = TestKey::pin_protected();
    let mut e = evidence(Layout::Applet3, &pki, &key, NONCE);
    e.response = answer(
        Layout::Applet3,
        &e.command,
        &key,
        &other.attestation_key,
        NONCE,
    );
    assert_eq!(refused(&e, &pki), "signature");
    // With the other chip's own certificates it is genuine, but not under this root.
    e.certificates = vec![other.leaf_der.clone(), other.intermediate_der.clone()];
    assert_eq!(refused(&e, &pki), "root");
}

#[test]
fn a_wrong_nonce_is_refused() {
    let pki = TestPki::new("Test root");
    let e = evidence(Layout::Applet3, &pki, &TestKey::pin_protected(), [0x11; 16]);
    assert_eq!(refused(&e, &pki), "nonce");
    let e = evidence(Layout::Applet7, &pki, &TestKey::pin_protected(), [0x11; 16]);
    assert_eq!(refused(&e, &pki), "nonce");
}

#[test]
fn expired_and_unknown_roots_are_refused() {
    let old = TestPki::with_leaf_years("Test root", 2015, 2020);
    let e = evidence(Layout::Applet3, &old, &TestKey::pin_protected(), NONCE);
    assert_eq!(refused(&e, &old), "expired");
    let young = TestPki::with_leaf_years("Test root", 2030, 2035);
    let e = evidence(Layout::Applet3, &young, &TestKey::pin_protected(), NONCE);
    assert_eq!(refused(&e, &young), "expired");

    let pki = TestPki::new("Test root");
    let e = evidence(Layout::Applet3, &pki, &TestKey::pin_protected(), NONCE);
    // NXP's roots (the default) do not admit the test chip.
    let nxp = roots::nxp_roots();
    let inter = roots::nxp_intermediates();
    let options = VerifyOptions {
        roots: &nxp,
        intermediates: &inter,
        now_unix: NOW,
        nonce: NONCE,
    };
    assert_eq!(kind(&verify(&e, &options).unwrap_err()), "root");
    // No root at all admits nothing.
    let options = VerifyOptions {
        roots: &[],
        intermediates: &[],
        now_unix: NOW,
        nonce: NONCE,
    };
    assert_eq!(kind(&verify(&e, &options).unwrap_err()), "root");
    // A self-made chain (a software token's owner making up a chip) leads nowhere.
    let attacker = TestPki::new("Test root");
    let e = evidence(Layout::Applet3, &attacker, &TestKey::pin_protected(), NONCE);
    assert_eq!(refused(&e, &pki), "root");
}

#[test]
fn export_policy_import_origin_and_open_key_agreement_are_refused() {
    let pki = TestPki::new("Test root");
    let mut key = TestKey::pin_protected();
    key.policy[0].1 |= POLICY_ALLOW_IMPORT_EXPORT;
    assert_eq!(
        refused(&evidence(Layout::Applet3, &pki, &key, NONCE), &pki),
        "policy"
    );

    let mut key = TestKey::pin_protected();
    key.origin = ORIGIN_EXTERNAL;
    assert_eq!(
        refused(&evidence(Layout::Applet3, &pki, &key, NONCE), &pki),
        "origin"
    );

    let mut key = TestKey::pin_protected();
    key.policy[1].1 |= POLICY_ALLOW_KA;
    assert_eq!(
        refused(&evidence(Layout::Applet7, &pki, &key, NONCE), &pki),
        "policy"
    );

    let mut key = TestKey::pin_protected();
    key.policy.clear();
    assert_eq!(
        refused(&evidence(Layout::Applet3, &pki, &key, NONCE), &pki),
        "policy"
    );

    let mut key = TestKey::pin_protected();
    key.class = 0x03;
    assert_eq!(
        refused(&evidence(Layout::Applet3, &pki, &key, NONCE), &pki),
        "key"
    );

    // Without a PIN: key agreement for anyone is reported, not refused.
    let mut key = TestKey::pin_protected();
    key.policy = vec![(0, POLICY_ALLOW_KA | 0x0020_0000)];
    let ok = check(&evidence(Layout::Applet3, &pki, &key, NONCE), &pki).unwrap();
    assert_eq!(ok.key_agreement, KeyAgreement::Anyone);
}

/// A real SE050's attested read, published in Worldcoin's orb-software (vectors/SOURCES.md):
/// object 60000001 (a P-256 key pair generated in the chip), signed by the chip's NXP-issued
/// attestation key "Attest-0400500194B58D02EAB29B046AA26A701B90".
fn orb_evidence() -> Evidence {
    let public = include_bytes!("vectors/orb-60000001.pubkey.raw");
    let extra = include_bytes!("vectors/orb-60000001.extra.raw");
    let signature = include_bytes!("vectors/orb-60000001.signature.raw");
    let (attributes, rest) = extra.split_at(extra.len() - 46);
    let (timestamp, rest) = rest.split_at(12);
    let (freshness, chip_id) = rest.split_at(16);
    let mut response = Vec::new();
    for (tag, value) in [
        (0x41u8, &public[..]),
        (0x42, attributes),
        (0x43, timestamp),
        (0x44, freshness),
        (0x45, chip_id),
        (0x46, &signature[..]),
    ] {
        response.push(tag);
        response.push(value.len() as u8);
        response.extend_from_slice(value);
    }
    response.extend_from_slice(&[0x90, 0x00]);
    let leaf = Cert::from_pem(include_str!("vectors/orb-2A66F1B2.pem")).unwrap();
    Evidence {
        wireguard_public_key: [0; 32],
        layout: Layout::Applet3,
        command: super::chip_response::AttestedReadCommand::encode(
            0x6000_0001,
            ATTESTATION_KEY_ID,
            freshness.try_into().unwrap(),
        ),
        response,
        certificates: vec![leaf[0].der.clone()],
    }
}

#[test]
fn a_real_se050_attestation_verifies_against_nxp_root() {
    let e = orb_evidence();
    let freshness = super::chip_response::AttestedReadCommand::parse(&e.command)
        .unwrap()
        .freshness;
    let nxp = roots::nxp_roots();
    let inter = roots::nxp_intermediates();
    let options = VerifyOptions {
        roots: &nxp,
        intermediates: &inter,
        now_unix: NOW,
        nonce: freshness,
    };
    let authentic = authenticate(&e, &options).expect("NXP chain and chip signature");
    assert_eq!(
        super::evidence::hex(&authentic.read.chip_id),
        "0400500194b58d02eab29b046aa26a701b90"
    );
    assert_eq!(authentic.chain.path.len(), 3);
    assert!(authentic.chain.path[2].contains("NXP RootCAvE506"));
    // It is a P-256 signing key, not a WireGuard key: refused at the key, after the
    // chain, signature and freshness passed.
    assert_eq!(kind(&verify(&e, &options).unwrap_err()), "key");

    // One signed byte altered: the chip's signature no longer verifies.
    let mut bad = e.clone();
    bad.response[10] ^= 1;
    assert_eq!(
        kind(&authenticate(&bad, &options).err().unwrap()),
        "signature"
    );
    // Not under a test root.
    let test_roots = TestPki::new("Test root").roots();
    let options = VerifyOptions {
        roots: &test_roots,
        ..options
    };
    assert_eq!(kind(&authenticate(&e, &options).err().unwrap()), "root");
}

#[test]
fn a_certificate_issued_by_a_non_ca_or_without_signature_usage_is_refused() {
    let pki = TestPki::new("Test root");
    let key = TestKey::pin_protected();
    // Another chip's attestation certificate (not a CA) cannot vouch for a key.
    let (forged, forged_key) = pki.issue(true, vec![rcgen::KeyUsagePurpose::DigitalSignature]);
    let mut e = evidence(Layout::Applet3, &pki, &key, NONCE);
    e.response = answer(Layout::Applet3, &e.command, &key, &forged_key, NONCE);
    e.certificates = vec![forged, pki.leaf_der.clone(), pki.intermediate_der.clone()];
    let refusal = check(&e, &pki).unwrap_err();
    assert!(refusal.to_string().contains("is not a CA"), "{refusal}");
    // A certificate whose key usage does not allow signatures.
    let (no_sign, no_sign_key) = pki.issue(false, vec![rcgen::KeyUsagePurpose::KeyAgreement]);
    let mut e = evidence(Layout::Applet3, &pki, &key, NONCE);
    e.response = answer(Layout::Applet3, &e.command, &key, &no_sign_key, NONCE);
    e.certificates = vec![no_sign, pki.intermediate_der.clone()];
    let refusal = check(&e, &pki).unwrap_err();
    assert!(
        refusal.to_string().contains("does not allow signatures"),
        "{refusal}"
    );
}

/// Applet 3.x does not sign the command: an old answer (signed over an old nonce) under a new
/// command carrying the current nonce is a replay, caught by the freshness value the chip
/// signed.
#[test]
fn an_old_answer_under_a_new_command_is_refused() {
    let pki = TestPki::new("Test root");
    let key = TestKey::pin_protected();
    let mut e = evidence(Layout::Applet3, &pki, &key, NONCE);
    e.response = answer(
        Layout::Applet3,
        &e.command,
        &key,
        &pki.attestation_key,
        [0x01; 16],
    );
    let refusal = check(&e, &pki).unwrap_err();
    assert!(
        refusal.to_string().contains("the chip signed freshness"),
        "{refusal}"
    );
}
