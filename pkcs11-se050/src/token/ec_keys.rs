//! NIST P-256 and Ed25519 key pairs (issue 22): CKA_EC_PARAMS, their attributes, how they are
//! read from the chip, and C_GenerateKeyPair with CKM_EC_KEY_PAIR_GEN / CKM_EC_EDWARDS_KEY_PAIR_GEN.
//!
//! They live beside the X25519 pairs in the same cache and under the same rules (a user PIN
//! makes them the user's, the same metadata records carry label and id). What differs:
//! - they sign (CKA_SIGN on the private half, CKA_VERIFY on the public one); P-256 also derives;
//! - their policy under a user PIN lets everyone read the public key (ReadObject of a pair
//!   answers only that), so a process without the PIN lists them without a copy of the point
//!   in the record; sign, key agreement, delete and attestation stay the user's;
//! - destroying the private half deletes the public half with it.

use super::attributes::{
    attr_name, bool_value, ulong_value, AttrValue, Template, KEY_TEMPLATE_COMMON,
};
use super::chip::{Chip, ChipErrorKind, EcCurve, PolicyEntry};
use super::ec::hex;
use super::error::{answer, refuse, Result};
use super::keygen::{
    requested_object_id, shared, CUSTOMER_LAST, KEY_BASE, PAIR_COMMON, PRIVATE_ONLY, PUBLIC_ONLY,
};
use super::metadata::{default_id, default_label, KeyMetadata};
use super::objects::{Half, KeyPair, ObjectCache};
use super::pin::{SO_PIN_ID, USER_PIN_ID};
use super::Token;
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

/// The pair at `id` as read from the chip; None when it is gone or not readable.
/// Keys from 0x7FFF0000 up are the applet's and NXP's (the attestation key F0000012 among them):
/// not the user's to sign with, so not shown.
pub const FIRST_RESERVED_ID: u32 = 0x7FFF_0000;

pub fn read_pair(chip: &mut dyn Chip, id: u32, curve: EcCurve) -> Result<Option<KeyPair>> {
    if id >= FIRST_RESERVED_ID {
        return Ok(None);
    }
    match chip.read_ec_public(id, curve) {
        Ok(public) => Ok(Some(pair_from_public(id, curve, public))),
        Err(e) if e.kind == ChipErrorKind::NotFound => Ok(None),
        Err(e) if matches!(e.kind, ChipErrorKind::Denied | ChipErrorKind::Refused) => {
            log::debug!(
                "{} pair {id:#010x}: public key not readable: {e}",
                curve.name()
            );
            Ok(None)
        }
        Err(e) => Err(e.to_ckr(&format!("reading public key {id:#010x}"))),
    }
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

/// A pair on `curve` with its public key as the applet layer gives it.
pub fn pair_from_public(id: u32, curve: EcCurve, public: Vec<u8>) -> KeyPair {
    let binding: [u8; 32] = match curve {
        EcCurve::NistP256 => public[1..33].try_into().expect("a 65-byte point"),
        EcCurve::Ed25519 => public[..].try_into().expect("a 32-byte key"),
    };
    KeyPair {
        ec: Some(curve),
        point: public,
        ..KeyPair::on_chip(id, binding)
    }
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

/// Usage attributes a template may set true on these keys (the rest of the X25519 list stays
/// refused: no encryption, no wrapping).
const MAY_BE_TRUE: &[CK_ATTRIBUTE_TYPE] = &[CKA_SIGN, CKA_VERIFY];

impl Token {
    pub(super) fn generate_ec_pair(
        &self,
        mechanism: CK_MECHANISM_TYPE,
        public: &Template,
        private: &Template,
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
        let (key_type, name) = match mechanism {
            CKM_EC_KEY_PAIR_GEN => (CKK_EC, "CKM_EC_KEY_PAIR_GEN"),
            _ => (CKK_EC_EDWARDS, "CKM_EC_EDWARDS_KEY_PAIR_GEN"),
        };
        public.only(
            &[KEY_TEMPLATE_COMMON, PAIR_COMMON, PUBLIC_ONLY],
            "public key",
        )?;
        private.only(
            &[KEY_TEMPLATE_COMMON, PAIR_COMMON, PRIVATE_ONLY],
            "private key",
        )?;
        public.expect_ulong(CKA_CLASS, CKO_PUBLIC_KEY, "public key")?;
        private.expect_ulong(CKA_CLASS, CKO_PRIVATE_KEY, "private key")?;
        for t in [public, private] {
            if let Some(kt) = t.get_ulong(CKA_KEY_TYPE)? {
                if kt != key_type {
                    return Err(refuse(
                        CKR_TEMPLATE_INCONSISTENT,
                        format_args!("CKA_KEY_TYPE {kt:#x}; {name} makes key type {key_type:#x}"),
                    ));
                }
            }
            t.expect_bool(
                CKA_TOKEN,
                true,
                "every key lives on the chip (CKA_TOKEN must be true)",
            )?;
            t.expect_bool(CKA_COPYABLE, false, "chip keys cannot be copied")?;
            t.expect_bool(CKA_DESTROYABLE, true, "chip keys can always be destroyed")?;
        }
        for (t, which) in [(public, PUBLIC_ONLY), (private, PRIVATE_ONLY)] {
            for &usage in which {
                if matches!(usage, CKA_SENSITIVE | CKA_EXTRACTABLE) || MAY_BE_TRUE.contains(&usage)
                {
                    continue;
                }
                if t.get_bool(usage)? == Some(true) {
                    return Err(refuse(
                        CKR_ATTRIBUTE_VALUE_INVALID,
                        format_args!(
                            "{} = true refused: chip EC keys sign (and P-256 keys derive); they \
                             do not encrypt, wrap or recover",
                            attr_name(usage)
                        ),
                    ));
                }
            }
        }
        private.expect_bool(CKA_SENSITIVE, true, "the private key never leaves the chip")?;
        private.expect_bool(
            CKA_EXTRACTABLE,
            false,
            "the private key never leaves the chip",
        )?;
        let params = public
            .get(CKA_EC_PARAMS)
            .or(private.get(CKA_EC_PARAMS))
            .ok_or_else(|| {
                refuse(
                    CKR_TEMPLATE_INCOMPLETE,
                    "CKA_EC_PARAMS missing from the public key template",
                )
            })?;
        let curve = curve_from_params(params, mechanism)?;
        if let (Some(a), Some(b)) = (public.get(CKA_EC_PARAMS), private.get(CKA_EC_PARAMS)) {
            if curve_from_params(b, mechanism)? != curve_from_params(a, mechanism)? {
                return Err(refuse(
                    CKR_TEMPLATE_INCONSISTENT,
                    "the templates name two curves",
                ));
            }
        }
        if curve == EcCurve::Ed25519 && private.get_bool(CKA_DERIVE)? == Some(true) {
            return Err(refuse(
                CKR_ATTRIBUTE_VALUE_INVALID,
                "CKA_DERIVE = true refused: Ed25519 keys only sign. With pkcs11-tool use --usage-sign",
            ));
        }
        let label = shared(public, private, CKA_LABEL)?;
        let id = shared(public, private, CKA_ID)?;
        KeyMetadata::new(
            0,
            true,
            label.clone().unwrap_or_default(),
            id.clone().unwrap_or_default(),
        )?;

        let user_ok = self.require_user(true).is_ok();
        let mut cache = self.cache.lock();
        self.refresh(&mut cache)?;
        let protected = cache.ids().any(|id| id == USER_PIN_ID);
        if protected && !user_ok {
            drop(cache);
            self.require_user(true)?;
            return Err(answer(CKR_USER_NOT_LOGGED_IN, "logged out meanwhile"));
        }
        let policy: Vec<PolicyEntry> = if protected {
            ec_key_policy(curve).to_vec()
        } else {
            Vec::new()
        };
        let key_id = choose_object_id(&cache, id.as_deref())?;
        let meta_file = match cache.record_file_for(key_id) {
            Some(stale) => stale,
            None => cache.free_record_file(key_id)?,
        };
        let label = label.unwrap_or_else(|| default_label(key_id));
        let id = id.unwrap_or_else(|| default_id(key_id));
        let record = KeyMetadata::new(key_id, true, label.clone(), id.clone())?;

        let mut link = self.link.lock();
        let chip = link
            .chip(&self.config)
            .map_err(|e| e.to_ckr("opening the chip"))?;
        chip.generate_ec(key_id, curve, &policy).map_err(|e| {
            e.to_ckr(&format!(
                "generating a {} key pair at {key_id:#010x}",
                curve.name()
            ))
        })?;
        let finish = (|| -> super::chip::ChipResult<KeyPair> {
            let pair = pair_from_public(key_id, curve, chip.read_ec_public(key_id, curve)?);
            if cache.is_used(meta_file) {
                match chip.delete(meta_file) {
                    Ok(()) => {}
                    Err(e) if e.kind == ChipErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            let record_policy: &[PolicyEntry] = if protected {
                &super::pin::record_policy()
            } else {
                &[]
            };
            chip.write_binary(
                meta_file,
                &record.clone().with_public(pair.public).encode(),
                record_policy,
            )?;
            Ok(pair)
        })();
        let pair = match finish {
            Ok(pair) => pair,
            Err(e) => {
                if let Err(undo) = chip.delete(key_id) {
                    if undo.kind != ChipErrorKind::NotFound {
                        log::error!("could not remove half-made key {key_id:#010x}: {undo}");
                    }
                }
                cache.forget(key_id);
                return Err(e.to_ckr(&format!("storing key {key_id:#010x} and its metadata")));
            }
        };
        drop(link);
        log::info!(
            "generated {} key pair {key_id:#010x} ({})",
            curve.name(),
            String::from_utf8_lossy(&label)
        );
        cache.forget(meta_file);
        cache.insert_pair(KeyPair {
            label,
            id,
            generated: true,
            meta_file: Some(meta_file),
            meta_v2: true,
            ..pair
        });
        let mut handle = |half| {
            cache
                .handle(key_id, half)
                .ok_or_else(|| refuse(CKR_GENERAL_ERROR, "no object handle left in this process"))
        };
        Ok((handle(Half::Public)?, handle(Half::Private)?))
    }
}

/// The object id a new pair gets: the one a 4-byte CKA_ID names, else the first free one.
fn choose_object_id(cache: &ObjectCache, id: Option<&[u8]>) -> Result<u32> {
    match id.and_then(requested_object_id) {
        Some(wanted) if cache.is_used(wanted) => Err(refuse(
            CKR_ATTRIBUTE_VALUE_INVALID,
            format_args!(
                "CKA_ID asks for object id {wanted:#010x}, which is already used on the chip"
            ),
        )),
        Some(wanted) => Ok(wanted),
        None => (KEY_BASE..CUSTOMER_LAST)
            .find(|i| !cache.is_used(*i))
            .ok_or_else(|| {
                refuse(
                    CKR_DEVICE_MEMORY,
                    "no free object id left in the customer range",
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
