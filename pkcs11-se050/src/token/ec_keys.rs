//! NIST P-256 and Ed25519 key pairs (issue 22): CKA_EC_PARAMS, their policy and attributes.
//! C_GenerateKeyPair makes them in keygen.rs, as X25519 pairs; the object cache (objects.rs)
//! reads them from the chip.
//!
//! They live beside the X25519 pairs in the same cache and under the same rules (a user PIN
//! makes them the user's, the same metadata records carry label and id). What differs:
//! - they sign (CKA_SIGN on the private half, CKA_VERIFY on the public one); P-256 also derives;
//! - their policy under a user PIN lets everyone read the public key (ReadObject of a pair
//!   answers only that), so a process without the PIN lists them without a copy of the point
//!   in the record; sign, key agreement, delete and attestation stay the user's;
//! - destroying the private half deletes the public half with it.

use super::attributes::{bool_value, ulong_value, AttrValue};
use super::chip::{Chip, ChipErrorKind, EcCurve, PolicyEntry};
use super::ec::hex;
use super::error::{refuse, Result};
use super::handles::Half;
use super::objects::{KeyPair, ObjectCache};
use super::pin::{SO_PIN_ID, USER_PIN_ID};
use crate::applet::protocol::{
    POLICY_ALLOW_ATTESTATION, POLICY_ALLOW_DELETE, POLICY_ALLOW_KA, POLICY_ALLOW_READ,
    POLICY_ALLOW_SIGN,
};
use pkcs11_sys::*;

/// prime256v1 / secp256r1 (1.2.840.10045.3.1.7).
pub const OID_P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
/// RFC 8410 id-Ed25519 (1.3.101.112): what this module reports for Ed25519 keys.
pub const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];
/// The GnuPG OID some tools send for Ed25519 (1.3.6.1.4.1.11591.15.1).
const OID_GNUPG_ED25519: &[u8] = &[
    0x06, 0x09, 0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01,
];
/// id-ecPublicKey (1.2.840.10045.2.1).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];

/// The curve CKA_EC_PARAMS names, for a mechanism that makes keys of `key_type`.
pub fn curve_from_params(params: &[u8], mechanism: CK_MECHANISM_TYPE) -> Result<EcCurve> {
    let curve = if params == OID_P256 {
        Some(EcCurve::NistP256)
    } else if params == OID_ED25519 || params == OID_GNUPG_ED25519 {
        Some(EcCurve::Ed25519)
    } else {
        match printable(params) {
            Some(b"prime256v1" | b"secp256r1" | b"P-256") => Some(EcCurve::NistP256),
            Some(b"edwards25519" | b"Ed25519" | b"ed25519") => Some(EcCurve::Ed25519),
            _ => None,
        }
    };
    let wanted = match mechanism {
        CKM_EC_EDWARDS_KEY_PAIR_GEN => EcCurve::Ed25519,
        _ => EcCurve::NistP256,
    };
    match curve {
        Some(curve) if curve == wanted => Ok(curve),
        Some(curve) => Err(refuse(
            CKR_TEMPLATE_INCONSISTENT,
            format_args!(
                "CKA_EC_PARAMS names {}, which this mechanism does not make ({} does)",
                curve.name(),
                wanted.name()
            ),
        )),
        None if params.first() == Some(&0x06) || params.first() == Some(&0x13) => Err(refuse(
            CKR_CURVE_NOT_SUPPORTED,
            format_args!(
                "CKA_EC_PARAMS {} names a curve the chip does not have here; supported: \
                 P-256 (06 08 2A 86 48 CE 3D 03 01 07) and Ed25519 (06 03 2B 65 70)",
                hex(params)
            ),
        )),
        None => Err(refuse(
            CKR_DOMAIN_PARAMS_INVALID,
            format_args!(
                "CKA_EC_PARAMS {} is neither an OID nor a curve name",
                hex(params)
            ),
        )),
    }
}

/// A PrintableString's text, also in OpenSC 0.23's form whose length counts one byte too many.
fn printable(der: &[u8]) -> Option<&[u8]> {
    match der {
        [0x13, len, rest @ ..]
            if *len as usize == rest.len() || *len as usize == rest.len() + 1 =>
        {
            Some(rest)
        }
        _ => None,
    }
}

/// What the user may do with a P-256 or Ed25519 key made under a user PIN; the SO may delete
/// it (C_InitToken), everyone may read its public key.
pub fn ec_key_policy(curve: EcCurve) -> [PolicyEntry; 3] {
    let agreement = match curve {
        EcCurve::NistP256 => POLICY_ALLOW_KA,
        EcCurve::Ed25519 => 0,
    };
    [
        PolicyEntry {
            auth_object: USER_PIN_ID,
            access: POLICY_ALLOW_SIGN
                | agreement
                | POLICY_ALLOW_READ
                | POLICY_ALLOW_DELETE
                | POLICY_ALLOW_ATTESTATION,
        },
        PolicyEntry {
            auth_object: SO_PIN_ID,
            access: POLICY_ALLOW_DELETE,
        },
        PolicyEntry {
            auth_object: 0,
            access: POLICY_ALLOW_READ,
        },
    ]
}

/// The policy of a P-256 or Ed25519 key made while no user PIN exists: everyone may do with it
/// what the user may under a PIN (sign, P-256's key agreement, read, delete, attestation), and
/// nothing more: nobody overwrites or regenerates it in place, as with the chip's default.
/// X25519's counterpart: attest.rs's `unprotected_key_policy`.
pub fn unprotected_ec_key_policy(curve: EcCurve) -> [PolicyEntry; 1] {
    [PolicyEntry {
        auth_object: 0,
        access: ec_key_policy(curve)[0].access,
    }]
}

/// The private half of an EC pair was destroyed (its chip key deleted): its record goes too,
/// and the public half stays in this process's cache until it is destroyed as well.
pub fn keep_public_only(cache: &mut ObjectCache, chip: &mut dyn Chip, pair: KeyPair) -> Result<()> {
    if let Some(file) = pair.meta_file {
        match chip.delete(file) {
            Ok(()) => {}
            Err(e) if e.kind == ChipErrorKind::NotFound => {}
            Err(e) => log::warn!("could not delete metadata file {file:#010x}: {e}"),
        }
        cache.forget(file);
    }
    cache.insert_pair(KeyPair {
        has_private: false,
        meta_file: None,
        ..pair
    });
    Ok(())
}

/// The whole public key: P-256's point, or the Ed25519 key.
pub fn public_key(pair: &KeyPair) -> Vec<u8> {
    match pair.ec {
        Some(EcCurve::NistP256) => pair.point.clone(),
        _ => pair.public.to_vec(),
    }
}

fn octet_string(value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04, value.len() as u8];
    out.extend_from_slice(value);
    out
}

/// DER SubjectPublicKeyInfo (RFC 5480 for P-256, RFC 8410 for Ed25519).
pub fn spki(pair: &KeyPair) -> Vec<u8> {
    let key = public_key(pair);
    let algorithm = match pair.ec {
        Some(EcCurve::NistP256) => [OID_EC_PUBLIC_KEY, OID_P256].concat(),
        _ => OID_ED25519.to_vec(),
    };
    let mut bits = vec![0x03, key.len() as u8 + 1, 0x00];
    bits.extend_from_slice(&key);
    let mut body = vec![0x30, algorithm.len() as u8];
    body.extend_from_slice(&algorithm);
    body.extend_from_slice(&bits);
    let mut out = vec![0x30, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

fn ulongs(values: &[CK_ULONG]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// The attributes in which a P-256 or Ed25519 pair differs from an X25519 one; None: as X25519.
pub fn attribute(
    pair: &KeyPair,
    curve: EcCurve,
    half: Half,
    t: CK_ATTRIBUTE_TYPE,
) -> Option<AttrValue> {
    let private = half == Half::Private;
    let p256 = curve == EcCurve::NistP256;
    let v = match t {
        CKA_KEY_TYPE => ulong_value(if p256 { CKK_EC } else { CKK_EC_EDWARDS }),
        CKA_KEY_GEN_MECHANISM => ulong_value(match (pair.generated, p256) {
            (false, _) => CK_UNAVAILABLE_INFORMATION,
            (true, true) => CKM_EC_KEY_PAIR_GEN,
            (true, false) => CKM_EC_EDWARDS_KEY_PAIR_GEN,
        }),
        CKA_ALLOWED_MECHANISMS if p256 => ulongs(&[
            CKM_ECDSA,
            CKM_ECDSA_SHA1,
            CKM_ECDSA_SHA256,
            CKM_ECDH1_DERIVE,
        ]),
        CKA_ALLOWED_MECHANISMS => ulongs(&[CKM_EDDSA]),
        CKA_DERIVE => bool_value(p256),
        CKA_SIGN if private => bool_value(true),
        CKA_VERIFY if !private => bool_value(true),
        CKA_EC_PARAMS => (if p256 { OID_P256 } else { OID_ED25519 }).to_vec(),
        CKA_PUBLIC_KEY_INFO => spki(pair),
        // PKCS#11 3.0: a DER OCTET STRING around the X9.62 point / the RFC 8032 key, as
        // OpenSC 0.23 and OpenSSH expect.
        CKA_EC_POINT if !private => octet_string(&public_key(pair)),
        _ => return None,
    };
    Some(AttrValue::Value(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::objects::pair_from_public;

    #[test]
    fn curves_are_named_by_oid_or_name_and_must_fit_the_mechanism() {
        let p = CKM_EC_KEY_PAIR_GEN;
        let e = CKM_EC_EDWARDS_KEY_PAIR_GEN;
        assert_eq!(curve_from_params(OID_P256, p).unwrap(), EcCurve::NistP256);
        assert_eq!(
            curve_from_params(b"\x13\x0aprime256v1", p).unwrap(),
            EcCurve::NistP256
        );
        assert_eq!(curve_from_params(OID_ED25519, e).unwrap(), EcCurve::Ed25519);
        assert_eq!(
            curve_from_params(b"\x13\x0cedwards25519", e).unwrap(),
            EcCurve::Ed25519
        );
        assert_eq!(
            curve_from_params(b"\x13\x0dedwards25519", e).unwrap(),
            EcCurve::Ed25519
        );
        assert_eq!(
            curve_from_params(OID_P256, e).unwrap_err().rv(),
            CKR_TEMPLATE_INCONSISTENT
        );
        // P-384, and P-256's OID with one byte wrong.
        let p384 = [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];
        assert_eq!(
            curve_from_params(&p384, p).unwrap_err().rv(),
            CKR_CURVE_NOT_SUPPORTED
        );
        let mut wrong = OID_P256.to_vec();
        wrong[9] = 0x08;
        assert_eq!(
            curve_from_params(&wrong, p).unwrap_err().rv(),
            CKR_CURVE_NOT_SUPPORTED
        );
        assert_eq!(
            curve_from_params(b"\x30\x00", p).unwrap_err().rv(),
            CKR_DOMAIN_PARAMS_INVALID
        );
    }

    #[test]
    fn spki_and_point_parse_with_rustcrypto_and_dalek() {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use p256::pkcs8::DecodePublicKey;
        let secret = p256::SecretKey::from_slice(&[7; 32]).unwrap();
        let point = secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let pair = pair_from_public(0x5000_0001, EcCurve::NistP256, point.clone());
        let parsed = p256::PublicKey::from_public_key_der(&spki(&pair)).unwrap();
        assert_eq!(parsed, secret.public_key());
        let Some(AttrValue::Value(ec_point)) =
            attribute(&pair, EcCurve::NistP256, Half::Public, CKA_EC_POINT)
        else {
            panic!()
        };
        assert_eq!(&ec_point[..2], &[0x04, 0x41]);
        assert_eq!(&ec_point[2..], point.as_slice());

        let ed = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
        let pair = pair_from_public(0x5000_0002, EcCurve::Ed25519, ed.to_bytes().to_vec());
        // RFC 8410 section 4 / 10.1: 30 2A 30 05 06 03 2B 65 70 03 21 00 || key.
        let expected = [
            &[
                0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x03, 0x21, 0x00,
            ][..],
            ed.as_bytes(),
        ]
        .concat();
        assert_eq!(spki(&pair), expected);
    }

    #[test]
    fn the_user_policy_allows_signing_and_attestation() {
        for curve in [EcCurve::NistP256, EcCurve::Ed25519] {
            let user = ec_key_policy(curve)[0];
            assert_eq!(user.auth_object, USER_PIN_ID);
            assert_ne!(user.access & POLICY_ALLOW_SIGN, 0);
            assert_ne!(user.access & POLICY_ALLOW_ATTESTATION, 0);
        }
        assert_ne!(
            ec_key_policy(EcCurve::NistP256)[0].access & POLICY_ALLOW_KA,
            0
        );
        assert_eq!(
            ec_key_policy(EcCurve::Ed25519)[0].access & POLICY_ALLOW_KA,
            0
        );
    }
}
