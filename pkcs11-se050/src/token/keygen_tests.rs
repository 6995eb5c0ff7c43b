//! C_GenerateKeyPair's rules that hold for every curve, against the file-backed virtual SE050
//! (se050-sim, which makes P-256 and Ed25519 keys itself and enforces object policies as the
//! chip does): a template's CKA_MODIFIABLE false is refused, and a key made without a PIN gets
//! an explicit policy that the chip enforces.

use super::attributes::Template;
use super::ec_keys::{unprotected_ec_key_policy, OID_ED25519, OID_P256};
use super::pin_tests::{chip_state, rv, token, RW};
use super::{DeriveParams, Token};
use crate::applet::EcCurve;
use crate::virtual_se050::ApduHandler;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use pkcs11_sys::*;

const X25519_OID: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x6E];

/// (mechanism, CKA_EC_PARAMS, usage the private half asks for) of each curve.
const CURVES: [(CK_MECHANISM_TYPE, &[u8], CK_ATTRIBUTE_TYPE); 3] = [
    (CKM_EC_MONTGOMERY_KEY_PAIR_GEN, X25519_OID, CKA_DERIVE),
    (CKM_EC_KEY_PAIR_GEN, OID_P256, CKA_SIGN),
    (CKM_EC_EDWARDS_KEY_PAIR_GEN, OID_ED25519, CKA_SIGN),
];

fn generate(
    t: &Token,
    s: CK_SESSION_HANDLE,
    (mechanism, params, usage): (CK_MECHANISM_TYPE, &[u8], CK_ATTRIBUTE_TYPE),
    public_extra: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
    private_extra: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
) -> super::error::Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
    let mut public = vec![(CKA_EC_PARAMS, params.to_vec())];
    public.extend_from_slice(public_extra);
    let mut private = vec![(usage, vec![1])];
    private.extend_from_slice(private_extra);
    t.generate_key_pair(
        s,
        mechanism,
        &Template::new(public),
        &Template::new(private),
    )
}

fn modifiable(t: &Token, s: CK_SESSION_HANDLE, h: CK_OBJECT_HANDLE) -> Vec<u8> {
    t.attributes(s, h, &[CKA_MODIFIABLE]).unwrap()[0]
        .revealed()
        .unwrap()
        .to_vec()
}

#[test]
fn every_curve_refuses_cka_modifiable_false_and_reports_what_it_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(&dir, "");
    let s = t.open_session(0, RW).unwrap();
    let unmodifiable = [(CKA_MODIFIABLE, vec![0])];
    for curve in CURVES {
        for (public, private) in [(&unmodifiable[..], &[][..]), (&[][..], &unmodifiable[..])] {
            assert_eq!(
                rv(generate(&t, s, curve, public, private)),
                CKR_ATTRIBUTE_VALUE_INVALID,
                "mechanism {:#x}",
                curve.0
            );
        }
        let modifiable_true = [(CKA_MODIFIABLE, vec![1])];
        let (public, private) = generate(&t, s, curve, &modifiable_true, &modifiable_true).unwrap();
        assert_eq!(modifiable(&t, s, public), [1]);
        assert_eq!(modifiable(&t, s, private), [1]);
    }
    // The refusals reached no chip: only the three accepted pairs (and their records) exist.
    let pairs = chip_state(&dir)
        .state()
        .objects
        .keys()
        .filter(|id| (0x5000_0000..0x6000_0000).contains(*id))
        .count();
    assert_eq!(pairs, 3);
}

/// WriteECKey generating a pair in place at `id` (no policy, outside any session): the status
/// word the chip answers.
fn regenerate_in_place(dir: &tempfile::TempDir, id: u32, curve: u8) -> u16 {
    let mut command = vec![0x80, 0x01, 0x61, 0x00, 0x09, 0x41, 0x04];
    command.extend_from_slice(&id.to_be_bytes());
    command.extend_from_slice(&[0x42, 0x01, curve]);
    let answer = chip_state(dir).process(&command).response;
    u16::from_be_bytes([answer[answer.len() - 2], answer[answer.len() - 1]])
}

#[test]
fn pin_less_ec_keys_get_an_explicit_policy_the_chip_enforces() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(&dir, "");
    let s = t.open_session(0, RW).unwrap();
    for (curve, chip_curve, index) in [(EcCurve::NistP256, 0x03, 1), (EcCurve::Ed25519, 0x40, 2)] {
        let (_, private) = generate(&t, s, CURVES[index], &[], &[]).unwrap();
        let key_id = t.cache.lock().resolve(private).unwrap().0.key_id;
        let policy = chip_state(&dir).state().objects[&key_id].policy.clone();
        let expected = crate::applet::policy::encode(&unprotected_ec_key_policy(curve));
        assert_eq!(policy, Some(expected), "{curve:?}");
        // What the user could do, everyone can: sign.
        let mechanism = match curve {
            EcCurve::NistP256 => CKM_ECDSA_SHA256,
            EcCurve::Ed25519 => CKM_EDDSA,
        };
        t.sign_init(s, mechanism, private).unwrap();
        t.sign(s, b"a pin-less key signs").unwrap();
        if curve == EcCurve::NistP256 {
            let peer = p256::SecretKey::from_slice(&[5; 32]).unwrap();
            let params = DeriveParams {
                kdf: CKD_NULL,
                shared_data: Vec::new(),
                public_data: peer
                    .public_key()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec(),
            };
            t.derive(
                s,
                CKM_ECDH1_DERIVE,
                Some(&params),
                private,
                &Template::default(),
            )
            .unwrap();
        }
        // What the chip's default would allow and the user could not: replace the key in
        // place. 6986: not allowed by the policy.
        assert_eq!(
            regenerate_in_place(&dir, key_id, chip_curve),
            0x6986,
            "{curve:?}"
        );
    }
}
