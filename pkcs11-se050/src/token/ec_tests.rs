//! P-256 and Ed25519 through the token layer (issue 22), on the virtual applet wrapped from
//! outside by `EcCommands`: a replying handler that answers the EC commands NXP's middleware
//! sends (curve list and creation, WriteECKey on curves 03/40, GetECCurveId, ReadObject,
//! ReadType, ReadIDList, ECDSASign/EdDSASign, ECDH) in software with RustCrypto and dalek, in the
//! chip's byte orders, records every command and policy, and passes the rest to the applet.
//! Session-wrapped commands (ProcessSessionCmd) are unwrapped for the EC part, so keys made
//! under a user PIN are covered too. Every signature the token returns is verified here again
//! with RustCrypto / dalek.

use super::attributes::{ulong_value, Template};
use super::pin_tests::{config, provision, rv, RW, USER};
use super::{applet_chip, DeriveParams, Token};
use crate::apdu::Tlvs;
use crate::applet::protocol::*;
use crate::applet::Se050;
use crate::t1::{ApduTransport, LinkError};
use crate::virtual_se050::applet::VirtualApplet;
use crate::virtual_se050::ApduHandler;
use crate::wipe::SecretBytes;
use ed25519_dalek::Signer;
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use parking_lot::Mutex;
use pkcs11_sys::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

enum Key {
    P256(p256::SecretKey),
    Ed25519(ed25519_dalek::SigningKey),
}

#[derive(Default)]
struct EcState {
    keys: BTreeMap<u32, Key>,
    policies: BTreeMap<u32, Vec<u8>>,
    p256_created: bool,
    curve_params: Vec<(u8, Vec<u8>)>,
    /// Every EC command (inner APDU) this handler answered.
    ec_commands: Vec<Vec<u8>>,
}

struct EcCommands {
    applet: VirtualApplet,
    ec: EcState,
}

fn answer(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::apdu::tlv::push(&mut out, TAG_1, data);
    out.extend_from_slice(&[0x90, 0x00]);
    out
}

impl EcCommands {
    /// The answer to an EC command, or None for the applet to handle.
    fn ec(&mut self, apdu: &[u8]) -> Option<Vec<u8>> {
        let (header, data) = (&apdu[..4], body(apdu));
        let tlvs = Tlvs::parse(data).ok();
        let tag = |t| tlvs.as_ref().and_then(|x| x.get(t)).map(<[u8]>::to_vec);
        let id = tag(TAG_1)
            .filter(|v| v.len() == 4)
            .map(|v| u32::from_be_bytes(v.try_into().unwrap()));
        let ours = id.is_some_and(|id| self.ec.keys.contains_key(&id));
        let reply = match header {
            [0x80, INS_READ, P1_CURVE, P2_LIST] => {
                let p256 = if self.ec.p256_created {
                    CURVE_SET
                } else {
                    CURVE_NOT_SET
                };
                answer(&[CURVE_NOT_SET, CURVE_NOT_SET, p256, CURVE_NOT_SET])
            }
            [0x80, INS_WRITE, P1_CURVE, P2_CREATE] => {
                self.ec.p256_created = true;
                vec![0x90, 0x00]
            }
            [0x80, INS_WRITE, P1_CURVE, P2_PARAM] => {
                self.ec.curve_params.push((tag(TAG_2)?[0], tag(TAG_3)?));
                vec![0x90, 0x00]
            }
            [0x80, INS_WRITE, 0x61, 0x00]
                if matches!(tag(TAG_2).as_deref(), Some([0x03 | 0x40])) =>
            {
                let id = id?;
                let key = match tag(TAG_2)?[0] {
                    0x03 if !self.ec.p256_created => return Some(vec![0x69, 0x85]),
                    0x03 => Key::P256(p256::SecretKey::random(&mut rand_core::OsRng)),
                    _ => {
                        let mut seed = [0u8; 32];
                        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
                        Key::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
                    }
                };
                self.ec.keys.insert(id, key);
                self.ec
                    .policies
                    .insert(id, tag(TAG_POLICY).unwrap_or_default());
                vec![0x90, 0x00]
            }
            [0x80, INS_READ, P1_CURVE, P2_CURVE_ID] if ours => match &self.ec.keys[&id?] {
                Key::P256(_) => answer(&[CURVE_NIST_P256]),
                Key::Ed25519(_) => answer(&[CURVE_ED25519]),
            },
            [0x80, INS_READ, 0x00, 0x00] if ours => match &self.ec.keys[&id?] {
                Key::P256(k) => answer(k.public_key().to_encoded_point(false).as_bytes()),
                Key::Ed25519(k) => {
                    let mut public = k.verifying_key().to_bytes();
                    public.reverse();
                    answer(&public)
                }
            },
            [0x80, INS_READ, 0x00, P2_TYPE] if ours => {
                let mut out = Vec::new();
                crate::apdu::tlv::push(&mut out, TAG_1, &[0x01]);
                crate::apdu::tlv::push(&mut out, TAG_2, &[0x01]);
                out.extend_from_slice(&[0x90, 0x00]);
                out
            }
            [0x80, INS_MGMT, 0x00, P2_EXIST] if ours => answer(&[RESULT_SUCCESS]),
            [0x80, INS_MGMT, 0x00, P2_DELETE_OBJECT] if ours => {
                self.ec.keys.remove(&id?);
                vec![0x90, 0x00]
            }
            [0x80, INS_CRYPTO, P1_SIGNATURE, P2_SIGN] if ours => {
                let input = tag(TAG_3)?;
                match (&self.ec.keys[&id?], tag(TAG_2)?.as_slice()) {
                    (Key::P256(k), [ECDSA_SHA_256]) if input.len() == 32 => {
                        let signature: p256::ecdsa::Signature =
                            p256::ecdsa::SigningKey::from(k).sign_prehash(&input).ok()?;
                        answer(signature.to_der().as_bytes())
                    }
                    (Key::Ed25519(k), [EDDSA_ED25519_PURE]) => {
                        let mut signature = k.sign(&input).to_bytes();
                        signature[..32].reverse();
                        signature[32..].reverse();
                        answer(&signature)
                    }
                    _ => vec![0x69, 0x85],
                }
            }
            [0x80, INS_CRYPTO, P1_EC, P2_DH] if ours => match &self.ec.keys[&id?] {
                Key::P256(k) => {
                    let peer = p256::PublicKey::from_sec1_bytes(&tag(TAG_2)?).ok()?;
                    let shared =
                        p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), peer.as_affine());
                    answer(shared.raw_secret_bytes())
                }
                Key::Ed25519(_) => vec![0x69, 0x85],
            },
            _ => return None,
        };
        self.ec.ec_commands.push(apdu.to_vec());
        Some(reply)
    }
}

/// The data field of a short or extended command APDU.
fn body(apdu: &[u8]) -> &[u8] {
    match apdu.get(4..) {
        Some([0, hi, lo, rest @ ..]) if !rest.is_empty() => {
            let lc = u16::from_be_bytes([*hi, *lo]) as usize;
            &rest[..lc.min(rest.len())]
        }
        Some([lc, rest @ ..]) if !rest.is_empty() => &rest[..(*lc as usize).min(rest.len())],
        _ => &[],
    }
}

impl ApduHandler for EcCommands {
    fn process(&mut self, command: &[u8]) -> crate::virtual_se050::Processed {
        // ProcessSessionCmd: the EC part answers the inner command itself.
        let inner = match command {
            [0x80, INS_PROCESS, 0, 0, ..] => Tlvs::parse(body(command))
                .ok()
                .and_then(|t| t.get(TAG_1).map(<[u8]>::to_vec)),
            _ => Some(command.to_vec()),
        };
        if let Some(reply) = inner.and_then(|inner| self.ec(&inner)) {
            return crate::virtual_se050::Processed {
                response: zeroize::Zeroizing::new(reply),
                busy: std::time::Duration::ZERO,
            };
        }
        let mut processed = self.applet.process(command);
        // ReadIDList: the EC keys join the last page.
        if command.starts_with(&[0x80, INS_READ, 0x00, P2_LIST])
            && processed.response.starts_with(&[0x41, 0x01, 0x01])
        {
            let n = processed.response.len();
            let tlvs = Tlvs::parse(&processed.response[..n - 2]).unwrap();
            let mut ids = tlvs.get(TAG_2).unwrap_or(&[]).to_vec();
            for id in self.ec.keys.keys() {
                ids.extend_from_slice(&id.to_be_bytes());
            }
            let mut out = vec![0x41, 0x01, 0x01];
            crate::apdu::tlv::push(&mut out, TAG_2, &ids);
            out.extend_from_slice(&[0x90, 0x00]);
            processed.response = zeroize::Zeroizing::new(out);
        }
        processed
    }

    fn reset(&mut self) {
        self.applet.reset();
    }
}

#[derive(Clone)]
struct Shared(Arc<Mutex<EcCommands>>);

impl ApduTransport for Shared {
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        Ok(self.0.lock().process(command).response)
    }
    fn resync(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

fn chip() -> Shared {
    Shared(Arc::new(Mutex::new(EcCommands {
        applet: VirtualApplet::in_memory(),
        ec: EcState::default(),
    })))
}

fn token_on(chip: &Shared) -> Token {
    let shared = chip.clone();
    let opener = Box::new(move |_: &crate::config::Config| {
        let transport: Box<dyn ApduTransport> = Box::new(shared.clone());
        Ok(applet_chip(Se050::select(transport).unwrap()))
    });
    Token::open(config(Path::new("/nonexistent/unused.state"), ""), opener).unwrap()
}

const P256_OID: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];

fn generate(
    t: &Token,
    s: CK_SESSION_HANDLE,
    mechanism: CK_MECHANISM_TYPE,
    params: &[u8],
) -> super::error::Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
    t.generate_key_pair(
        s,
        mechanism,
        &Template::new(vec![
            (CKA_EC_PARAMS, params.to_vec()),
            (CKA_VERIFY, vec![1]),
            (CKA_LABEL, b"k".to_vec()),
        ]),
        &Template::new(vec![(CKA_SIGN, vec![1]), (CKA_ID, vec![0x42])]),
    )
}

fn value(t: &Token, s: CK_SESSION_HANDLE, h: CK_OBJECT_HANDLE, a: CK_ATTRIBUTE_TYPE) -> Vec<u8> {
    t.attributes(s, h, &[a])
        .unwrap()
        .remove(0)
        .revealed()
        .unwrap()
        .to_vec()
}

fn sign(
    t: &Token,
    s: CK_SESSION_HANDLE,
    mechanism: CK_MECHANISM_TYPE,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
) -> super::error::Result<Vec<u8>> {
    t.sign_init(s, mechanism, key)?;
    t.sign(s, data)
}

/// The objects `t` finds in session `s` with the attributes `wanted`.
fn find(
    t: &Token,
    s: CK_SESSION_HANDLE,
    wanted: Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>,
) -> Vec<CK_OBJECT_HANDLE> {
    t.find_init(s, &Template::new(wanted)).unwrap();
    let found = t.find_next(s, 10).unwrap();
    t.find_final(s).unwrap();
    found
}

/// CKM_ECDH1_DERIVE's parameters with `peer`'s uncompressed point.
fn p256_params(peer: &p256::SecretKey) -> DeriveParams {
    DeriveParams {
        kdf: CKD_NULL,
        shared_data: vec![],
        public_data: peer
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec(),
    }
}

/// C_DeriveKey with CKM_ECDH1_DERIVE and an empty template.
fn ecdh(
    t: &Token,
    s: CK_SESSION_HANDLE,
    params: &DeriveParams,
    key: CK_OBJECT_HANDLE,
) -> super::error::Result<CK_OBJECT_HANDLE> {
    t.derive(s, CKM_ECDH1_DERIVE, Some(params), key, &Template::default())
}

/// The public key from CKA_EC_POINT (a DER OCTET STRING).
fn point(t: &Token, s: CK_SESSION_HANDLE, public: CK_OBJECT_HANDLE) -> Vec<u8> {
    let der = value(t, s, public, CKA_EC_POINT);
    assert_eq!(der[0], 0x04);
    assert_eq!(der[1] as usize, der.len() - 2);
    der[2..].to_vec()
}

#[test]
fn p256_keys_are_made_listed_and_sign_in_both_ecdsa_mechanisms() {
    let chip = chip();
    let t = token_on(&chip);
    let s = t.open_session(0, RW).unwrap();
    let (public, private) = generate(&t, s, CKM_EC_KEY_PAIR_GEN, P256_OID).unwrap();
    // NXP's curve creation ran once, with RustCrypto's parameters.
    assert!(chip.0.lock().ec.p256_created);
    assert_eq!(chip.0.lock().ec.curve_params.len(), 5);
    assert_eq!(value(&t, s, private, CKA_KEY_TYPE), ulong_value(CKK_EC));
    assert_eq!(value(&t, s, public, CKA_EC_PARAMS), P256_OID);
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point(&t, s, public)).unwrap();

    let message = b"the log line to sign";
    let signature = sign(&t, s, CKM_ECDSA_SHA256, private, message).unwrap();
    let signature = p256::ecdsa::Signature::from_slice(&signature).unwrap();
    use p256::ecdsa::signature::Verifier;
    key.verify(message, &signature)
        .expect("ECDSA_SHA256 verifies with RustCrypto");

    // Several parts hash like one.
    t.sign_init(s, CKM_ECDSA_SHA256, private).unwrap();
    t.sign_update(s, b"the log ").unwrap();
    t.sign_update(s, b"line to sign").unwrap();
    let parts = t.sign_final(s).unwrap();
    key.verify(
        message,
        &p256::ecdsa::Signature::from_slice(&parts).unwrap(),
    )
    .unwrap();

    // CKM_ECDSA: the caller's hash, not hashed again.
    let digest: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(message).into()
    };
    let raw = sign(&t, s, CKM_ECDSA, private, &digest).unwrap();
    key.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&raw).unwrap())
        .unwrap();

    // Another process sees the key (listing by curve: GetECCurveId).
    let other = token_on(&chip);
    let so = other.open_session(0, RW).unwrap();
    assert_eq!(
        find(&other, so, vec![(CKA_KEY_TYPE, ulong_value(CKK_EC))]).len(),
        2
    );
    assert_eq!(value(&other, so, public, CKA_LABEL), b"k");
    assert_eq!(value(&other, so, private, CKA_ID), vec![0x42]);
}

#[test]
fn ed25519_keys_sign_as_dalek_verifies_and_the_key_is_rfc8032_order() {
    let chip = chip();
    let t = token_on(&chip);
    let s = t.open_session(0, RW).unwrap();
    let (public, private) =
        generate(&t, s, CKM_EC_EDWARDS_KEY_PAIR_GEN, b"\x13\x0cedwards25519").unwrap();
    assert!(
        !chip.0.lock().ec.p256_created,
        "no curve set-up for Ed25519"
    );
    assert_eq!(
        value(&t, s, private, CKA_KEY_TYPE),
        ulong_value(CKK_EC_EDWARDS)
    );
    assert_eq!(value(&t, s, public, CKA_EC_PARAMS), ED25519_OID);
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(&point(&t, s, public).try_into().unwrap()).unwrap();
    let message = b"an Ed25519 message";
    let signature = sign(&t, s, CKM_EDDSA, private, message).unwrap();
    key.verify_strict(
        message,
        &ed25519_dalek::Signature::from_slice(&signature).unwrap(),
    )
    .expect("verifies with dalek");
}

#[test]
fn bad_input_gets_the_specified_code_and_never_reaches_the_chip() {
    let chip = chip();
    let t = token_on(&chip);
    let s = t.open_session(0, RW).unwrap();
    let (_, p256_private) = generate(&t, s, CKM_EC_KEY_PAIR_GEN, P256_OID).unwrap();
    let (ed_public, ed_private) =
        generate(&t, s, CKM_EC_EDWARDS_KEY_PAIR_GEN, ED25519_OID).unwrap();
    let (_, x25519_private) = t
        .generate_key_pair(
            s,
            CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
            &Template::new(vec![(CKA_EC_PARAMS, vec![0x06, 0x03, 0x2B, 0x65, 0x6E])]),
            &Template::new(vec![(CKA_DERIVE, vec![1])]),
        )
        .unwrap();
    let before = chip.0.lock().ec.ec_commands.len();

    let long = vec![0u8; crate::applet::sign::MAX_EDDSA_MESSAGE + 1];
    assert_eq!(
        rv(sign(&t, s, CKM_EDDSA, ed_private, &long)),
        CKR_DATA_LEN_RANGE
    );
    assert_eq!(
        rv(sign(&t, s, CKM_ECDSA, p256_private, &[0; 65])),
        CKR_DATA_LEN_RANGE
    );
    assert_eq!(
        rv(sign(&t, s, CKM_ECDSA, p256_private, &[])),
        CKR_DATA_LEN_RANGE
    );
    // A curve the chip does not have here (P-384).
    let p384 = [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];
    assert_eq!(
        rv(generate(&t, s, CKM_EC_KEY_PAIR_GEN, &p384)),
        CKR_CURVE_NOT_SUPPORTED
    );
    // Mechanisms with the wrong key type.
    assert_eq!(
        rv(t.sign_init(s, CKM_ECDSA, ed_private)),
        CKR_KEY_TYPE_INCONSISTENT
    );
    assert_eq!(
        rv(t.sign_init(s, CKM_EDDSA, p256_private)),
        CKR_KEY_TYPE_INCONSISTENT
    );
    assert_eq!(
        rv(t.sign_init(s, CKM_ECDSA, x25519_private)),
        CKR_KEY_TYPE_INCONSISTENT
    );
    assert_eq!(
        rv(t.sign_init(s, CKM_EDDSA, ed_public)),
        CKR_KEY_FUNCTION_NOT_PERMITTED
    );
    assert_eq!(
        rv(t.sign_init(s, CKM_SHA256_RSA_PKCS, p256_private)),
        CKR_MECHANISM_INVALID
    );
    let params = DeriveParams {
        kdf: CKD_NULL,
        shared_data: vec![],
        public_data: vec![0x04; 65],
    };
    assert_eq!(
        rv(ecdh(&t, s, &params, ed_private)),
        CKR_KEY_TYPE_INCONSISTENT
    );
    assert_eq!(
        rv(ecdh(&t, s, &params, p256_private)),
        CKR_MECHANISM_PARAM_INVALID,
        "a point off the curve"
    );
    assert_eq!(
        chip.0.lock().ec.ec_commands.len(),
        before,
        "nothing reached the chip"
    );
}

#[test]
fn p256_ecdh_equals_rustcrypto() {
    let chip = chip();
    let t = token_on(&chip);
    let s = t.open_session(0, RW).unwrap();
    let (public, private) = generate(&t, s, CKM_EC_KEY_PAIR_GEN, P256_OID).unwrap();
    let peer = p256::SecretKey::random(&mut rand_core::OsRng);
    let secret = ecdh(&t, s, &p256_params(&peer), private).unwrap();
    let ours = p256::PublicKey::from_sec1_bytes(&point(&t, s, public)).unwrap();
    let theirs = p256::ecdh::diffie_hellman(peer.to_nonzero_scalar(), ours.as_affine());
    assert_eq!(
        value(&t, s, secret, CKA_VALUE),
        theirs.raw_secret_bytes().to_vec()
    );
}

/// As for X25519 (tests.rs): a P-256 key deleted by another process is a bad base key
/// (CKR_KEY_HANDLE_INVALID, not a chip failure), and this process forgets it.
#[test]
fn p256_ecdh_with_a_key_another_process_deleted_is_a_bad_key_handle() {
    let chip = chip();
    let t = token_on(&chip);
    let s = t.open_session(0, RW).unwrap();
    let (public, private) = generate(&t, s, CKM_EC_KEY_PAIR_GEN, P256_OID).unwrap();
    let other = token_on(&chip);
    let so = other.open_session(0, RW).unwrap();
    let found = find(&other, so, vec![(CKA_CLASS, ulong_value(CKO_PRIVATE_KEY))]);
    assert_eq!(found.len(), 1);
    let key_id = other.cache.lock().resolve(found[0]).unwrap().0.key_id;
    t.destroy(s, private).unwrap();
    t.destroy(s, public).unwrap();
    let peer = p256::SecretKey::from_slice(&[5; 32]).unwrap();
    assert_eq!(
        rv(ecdh(&other, so, &p256_params(&peer), found[0])),
        CKR_KEY_HANDLE_INVALID
    );
    assert!(!other.cache.lock().pairs.contains_key(&key_id));
}

#[test]
fn keys_made_under_the_user_pin_get_the_users_policy_with_sign_and_attestation() {
    let chip = chip();
    let t = token_on(&chip);
    provision(&t);
    let s = t.open_session(0, RW).unwrap();
    assert_eq!(
        rv(generate(&t, s, CKM_EC_KEY_PAIR_GEN, P256_OID)),
        CKR_USER_NOT_LOGGED_IN
    );
    t.login(s, CKU_USER, USER).unwrap();
    let (_, private) = generate(&t, s, CKM_EC_EDWARDS_KEY_PAIR_GEN, ED25519_OID).unwrap();
    let key_id = t.cache.lock().resolve(private).unwrap().0.key_id;
    let policy = chip.0.lock().ec.policies[&key_id].clone();
    let expected = crate::applet::policy::encode(&super::ec_keys::ec_key_policy(
        crate::applet::EcCurve::Ed25519,
    ));
    assert_eq!(policy, expected);
    // User: sign, read, delete, attestation.
    assert_eq!(
        &policy[1..9],
        &[0x7A, 0xFF, 0x00, 0x01, 0x10, 0x24, 0x80, 0x00]
    );
    sign(&t, s, CKM_EDDSA, private, b"signed in the user's session").unwrap();
    t.logout(s).unwrap();
    assert_eq!(
        rv(t.sign_init(s, CKM_EDDSA, private)),
        CKR_USER_NOT_LOGGED_IN
    );
}

/// A self-signed P-256 certificate made with `openssl req -x509` for this test
/// (subject and issuer CN=device-7, O=fleet; serial 0B31272765EED810C97F9E9E3AE83E23687A76F8).
const CERTIFICATE: &str = "3082019b30820141a00302010202140b31272765eed810c97f9e9e3ae83e23687a76f8300a06082a8648ce3d04030230233111300f06035504030c086465766963652d37310e300c060355040a0c05666c656574301e170d3236313230373139333830375a170d3336313230343139333830375a30233111300f06035504030c086465766963652d37310e300c060355040a0c05666c6565743059301306072a8648ce3d020106082a8648ce3d030107034200045425bfafc3773d80a28c41f939fa6ed5789c28c457ec895383fe6b5c50547dd122a2e9f8f73a6a57e72a5e63d87a7bdfb6f26a8fceadadb691558b7eb97ea603a3533051301d0603551d0e041604140dff8540239b47ae0c483aba4f0e95ab647de751301f0603551d230418301680140dff8540239b47ae0c483aba4f0e95ab647de751300f0603551d130101ff040530030101ff300a06082a8648ce3d0403020348003045022100a6d1da0ea69490a97c5a588063806bea926832d020ff730f5a6643c3dbebccc402204275de3612e83f60dc082ad87e25a52d1f8b9aedc96190f067504adfc56359cd";

#[test]
fn certificates_are_stored_found_by_id_read_back_and_destroyed() {
    let chip = chip();
    let t = token_on(&chip);
    let s = t.open_session(0, RW).unwrap();
    let der = crate::nxp_vectors::hex(CERTIFICATE);
    let cert = t
        .create_object(
            s,
            &Template::new(vec![
                (CKA_CLASS, ulong_value(CKO_CERTIFICATE)),
                (CKA_CERTIFICATE_TYPE, ulong_value(CKC_X_509)),
                (CKA_TOKEN, vec![1]),
                (CKA_ID, vec![0x42]),
                (CKA_LABEL, b"device-7".to_vec()),
                (CKA_VALUE, der.clone()),
            ]),
        )
        .unwrap();
    // Another process finds it by class and CKA_ID, as clients look up a key's certificate.
    let other = token_on(&chip);
    let so = other.open_session(0, RW).unwrap();
    let wanted = vec![
        (CKA_CLASS, ulong_value(CKO_CERTIFICATE)),
        (CKA_ID, vec![0x42]),
    ];
    assert_eq!(find(&other, so, wanted), vec![cert]);
    assert_eq!(value(&other, so, cert, CKA_VALUE), der);
    assert_eq!(value(&other, so, cert, CKA_LABEL), b"device-7");
    let serial = value(&other, so, cert, CKA_SERIAL_NUMBER);
    assert_eq!(&serial[..2], &[0x02, 0x14]);
    assert_eq!(&serial[2..4], &[0x0B, 0x31]);
    let subject = value(&other, so, cert, CKA_SUBJECT);
    assert_eq!(subject, value(&other, so, cert, CKA_ISSUER), "self-signed");
    assert!(subject.windows(8).any(|w| w == b"device-7"));
    // Not a certificate: refused before the chip.
    let bad = t.create_object(
        s,
        &Template::new(vec![
            (CKA_CLASS, ulong_value(CKO_CERTIFICATE)),
            (CKA_VALUE, vec![0x30, 0x00]),
        ]),
    );
    assert_eq!(rv(bad), CKR_ATTRIBUTE_VALUE_INVALID);
    // A modifiable certificate is refused (the token would report it unmodifiable); asking for
    // the unmodifiable one it makes is accepted.
    let with_modifiable = |modifiable: u8| {
        Template::new(vec![
            (CKA_CLASS, ulong_value(CKO_CERTIFICATE)),
            (CKA_CERTIFICATE_TYPE, ulong_value(CKC_X_509)),
            (CKA_MODIFIABLE, vec![modifiable]),
            (CKA_ID, vec![0x43]),
            (CKA_VALUE, der.clone()),
        ])
    };
    assert_eq!(
        rv(t.create_object(s, &with_modifiable(1))),
        CKR_ATTRIBUTE_VALUE_INVALID
    );
    let unmodifiable = t.create_object(s, &with_modifiable(0)).unwrap();
    assert_eq!(value(&t, s, unmodifiable, CKA_MODIFIABLE), vec![0]);
    t.destroy(s, unmodifiable).unwrap();
    other.destroy(so, cert).unwrap();
    assert_eq!(
        rv(t.attributes(s, cert, &[CKA_VALUE]).and_then(|_| {
            t.find_init(
                s,
                &Template::new(vec![(CKA_CLASS, ulong_value(CKO_CERTIFICATE))]),
            )?;
            let found = t.find_next(s, 10)?;
            t.find_final(s)?;
            if found.is_empty() {
                Err(super::error::Error(CKR_OBJECT_HANDLE_INVALID))
            } else {
                Ok(())
            }
        })),
        CKR_OBJECT_HANDLE_INVALID
    );
}

/// A certificate (longer than 256 bytes) read back in a logged-in process: the read goes
/// wrapped in the user's chip session, whose outer Le must cover the inner one.
#[test]
fn a_certificate_is_read_inside_the_users_session() {
    let chip = chip();
    let t = token_on(&chip);
    provision(&t);
    let s = t.open_session(0, RW).unwrap();
    t.login(s, CKU_USER, USER).unwrap();
    let der = crate::nxp_vectors::hex(CERTIFICATE);
    assert!(der.len() > 256);
    t.create_object(
        s,
        &Template::new(vec![
            (CKA_CLASS, ulong_value(CKO_CERTIFICATE)),
            (CKA_ID, vec![9]),
            (CKA_VALUE, der.clone()),
        ]),
    )
    .unwrap();
    let other = token_on(&chip);
    let so = other.open_session(0, RW).unwrap();
    other.login(so, CKU_USER, USER).unwrap();
    let found = find(&other, so, vec![(CKA_CLASS, ulong_value(CKO_CERTIFICATE))]);
    assert_eq!(
        found.len(),
        1,
        "the certificate is found in the user's session"
    );
    assert_eq!(value(&other, so, found[0], CKA_VALUE), der);
}
