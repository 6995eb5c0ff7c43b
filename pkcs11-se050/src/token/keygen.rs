//! C_GenerateKeyPair: an X25519 (CKM_EC_MONTGOMERY_KEY_PAIR_GEN), P-256 (CKM_EC_KEY_PAIR_GEN)
//! or Ed25519 (CKM_EC_EDWARDS_KEY_PAIR_GEN) pair made inside the chip, by one routine;
//! [`PairCurve`] holds what differs by curve.
//!
//! Templates are checked strictly, because whatever they promise must be true of a key that
//! lives on the chip: an X25519 key always derives and never signs, no private key ever
//! leaves, and every key is a token object. CKA_SIGN / CKA_VERIFY (which Debian 12's pkcs11-tool puts in its templates unless
//! given `--usage-derive`) are refused with a message saying so, rather than accepted and then
//! silently reported false.

use super::attributes::{attr_name, Template, KEY_TEMPLATE_COMMON};
use super::chip::{Chip, ChipErrorKind, ChipResult, EcCurve, PolicyEntry};
use super::ec::check_ec_params;
use super::ec_keys::{curve_from_params, ec_key_policy, unprotected_ec_key_policy};
use super::error::{answer, refuse, Error, Result};
use super::handles::Half;
use super::metadata::{default_id, default_label, KeyMetadata, META_BASE};
use super::objects::{pair_from_public, KeyPair, ObjectCache};
use super::pin::{key_policy, USER_PIN_ID};
use super::Token;
use pkcs11_sys::*;

/// Where new key pairs are placed when the caller does not choose an object id.
pub const KEY_BASE: u32 = 0x5000_0000;
/// The customer range of object ids below the metadata files.
pub const CUSTOMER_FIRST: u32 = 0x0000_0001;
pub const CUSTOMER_LAST: u32 = META_BASE - 1;

/// What both halves' templates may name besides KEY_TEMPLATE_COMMON.
const PAIR_COMMON: &[CK_ATTRIBUTE_TYPE] = &[CKA_EC_PARAMS, CKA_SUBJECT, CKA_ALLOWED_MECHANISMS];
const PUBLIC_ONLY: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_VERIFY,
    CKA_VERIFY_RECOVER,
    CKA_ENCRYPT,
    CKA_WRAP,
    CKA_TRUSTED,
];
const PRIVATE_ONLY: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_SIGN,
    CKA_SIGN_RECOVER,
    CKA_DECRYPT,
    CKA_UNWRAP,
    CKA_SENSITIVE,
    CKA_EXTRACTABLE,
    CKA_ALWAYS_AUTHENTICATE,
    CKA_WRAP_WITH_TRUSTED,
];

/// The kind of pair C_GenerateKeyPair makes, named by its mechanism: everything in which the
/// generation of an X25519, a P-256 and an Ed25519 pair differs is here; the steps they share
/// (template rules, PIN, object id, metadata record, undo) are in `generate_key_pair`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PairCurve {
    X25519,
    Ec(EcCurve),
}

const X25519_CANNOT: &str = "X25519 keys only do key agreement (CKA_DERIVE); they cannot sign, \
                             verify, encrypt or wrap. With pkcs11-tool use --usage-derive";
const EC_CANNOT: &str = "chip EC keys sign (and P-256 keys derive); they do not encrypt, wrap \
                         or recover";

impl PairCurve {
    fn from_mechanism(mechanism: CK_MECHANISM_TYPE) -> Result<PairCurve> {
        match mechanism {
            CKM_EC_MONTGOMERY_KEY_PAIR_GEN => Ok(PairCurve::X25519),
            CKM_EC_KEY_PAIR_GEN => Ok(PairCurve::Ec(EcCurve::NistP256)),
            CKM_EC_EDWARDS_KEY_PAIR_GEN => Ok(PairCurve::Ec(EcCurve::Ed25519)),
            _ => Err(refuse(
                CKR_MECHANISM_INVALID,
                format_args!("key pair generation with mechanism {mechanism:#x}; only CKM_EC_MONTGOMERY_KEY_PAIR_GEN, CKM_EC_KEY_PAIR_GEN (P-256) and CKM_EC_EDWARDS_KEY_PAIR_GEN (Ed25519)"),
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            PairCurve::X25519 => "X25519",
            PairCurve::Ec(curve) => curve.name(),
        }
    }

    fn key_type(self) -> CK_KEY_TYPE {
        match self {
            PairCurve::X25519 => CKK_EC_MONTGOMERY,
            PairCurve::Ec(EcCurve::NistP256) => CKK_EC,
            PairCurve::Ec(EcCurve::Ed25519) => CKK_EC_EDWARDS,
        }
    }

    /// The key type a template named that this mechanism does not make.
    fn wrong_key_type(self, named: CK_KEY_TYPE) -> Error {
        let message = match self {
            PairCurve::X25519 => {
                format!("CKA_KEY_TYPE {named:#x}; this mechanism makes CKK_EC_MONTGOMERY keys")
            }
            PairCurve::Ec(curve) => {
                let mechanism = match curve {
                    EcCurve::NistP256 => "CKM_EC_KEY_PAIR_GEN",
                    EcCurve::Ed25519 => "CKM_EC_EDWARDS_KEY_PAIR_GEN",
                };
                format!(
                    "CKA_KEY_TYPE {named:#x}; {mechanism} makes key type {:#x}",
                    self.key_type()
                )
            }
        };
        refuse(CKR_TEMPLATE_INCONSISTENT, message)
    }

    /// Usage attributes (of PUBLIC_ONLY / PRIVATE_ONLY) a template may set true, and why the
    /// others are refused.
    fn usages(self) -> (&'static [CK_ATTRIBUTE_TYPE], &'static str) {
        match self {
            PairCurve::X25519 => (&[], X25519_CANNOT),
            PairCurve::Ec(_) => (&[CKA_SIGN, CKA_VERIFY], EC_CANNOT),
        }
    }

    /// The rule for the private half's CKA_DERIVE.
    fn check_derive(self, private: &Template) -> Result<()> {
        match self {
            PairCurve::X25519 => private.expect_bool(
                CKA_DERIVE,
                true,
                "the private key of an X25519 pair always derives",
            ),
            PairCurve::Ec(EcCurve::Ed25519) if private.get_bool(CKA_DERIVE)? == Some(true) => {
                Err(refuse(
                    CKR_ATTRIBUTE_VALUE_INVALID,
                    "CKA_DERIVE = true refused: Ed25519 keys only sign. With pkcs11-tool use --usage-sign",
                ))
            }
            PairCurve::Ec(_) => Ok(()),
        }
    }

    /// Checks that one template's CKA_EC_PARAMS names this curve.
    fn check_params(self, params: &[u8], mechanism: CK_MECHANISM_TYPE) -> Result<()> {
        match self {
            PairCurve::X25519 => check_ec_params(params),
            PairCurve::Ec(_) => curve_from_params(params, mechanism).map(drop),
        }
    }

    fn missing_params(self) -> Error {
        refuse(
            CKR_TEMPLATE_INCOMPLETE,
            match self {
                PairCurve::X25519 => {
                    "CKA_EC_PARAMS missing from the public key template (use curve25519)"
                }
                PairCurve::Ec(_) => "CKA_EC_PARAMS missing from the public key template",
            },
        )
    }

    /// The chip policy of a new key: the user's (and the SO's) under a user PIN. Without a PIN
    /// every key still gets an explicit policy, so that its attestation shows what it allows
    /// (token/attest.rs), and so that nobody may do with it what the user could not: no
    /// policy would mean the chip's default, which allows everything (overwriting the key,
    /// regenerating it in place) and which a verifier cannot tell from "everything".
    fn policy(self, protected: bool) -> Vec<PolicyEntry> {
        match (self, protected) {
            (PairCurve::X25519, true) => key_policy().to_vec(),
            (PairCurve::X25519, false) => super::attest::unprotected_key_policy().to_vec(),
            (PairCurve::Ec(curve), true) => ec_key_policy(curve).to_vec(),
            (PairCurve::Ec(curve), false) => unprotected_ec_key_policy(curve).to_vec(),
        }
    }

    fn generate(self, chip: &mut dyn Chip, key_id: u32, policy: &[PolicyEntry]) -> ChipResult<()> {
        match self {
            PairCurve::X25519 => chip.generate_x25519_with_policy(key_id, policy),
            PairCurve::Ec(curve) => chip.generate_ec(key_id, curve, policy),
        }
    }

    /// The new pair as the chip shows it (its public key read back).
    fn read_back(self, chip: &mut dyn Chip, key_id: u32) -> ChipResult<KeyPair> {
        match self {
            PairCurve::X25519 => Ok(KeyPair::on_chip(key_id, chip.read_x25519_public(key_id)?)),
            PairCurve::Ec(curve) => Ok(pair_from_public(
                key_id,
                curve,
                chip.read_ec_public(key_id, curve)?,
            )),
        }
    }
}

impl Token {
    pub fn generate_key_pair(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        public: &Template,
        private: &Template,
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
        self.check_session(session, true)?;
        let curve = PairCurve::from_mechanism(mechanism)?;
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
                if kt != curve.key_type() {
                    return Err(curve.wrong_key_type(kt));
                }
            }
            t.expect_bool(
                CKA_TOKEN,
                true,
                "every key lives on the chip (CKA_TOKEN must be true)",
            )?;
            t.expect_bool(CKA_COPYABLE, false, "chip keys cannot be copied")?;
            t.expect_bool(CKA_DESTROYABLE, true, "chip keys can always be destroyed")?;
            // Every pair reports CKA_MODIFIABLE true (C_SetAttributeValue relabels it): a
            // template asking for false is refused, never accepted and then reported true.
            t.expect_bool(
                CKA_MODIFIABLE,
                true,
                "label and id of chip keys stay modifiable",
            )?;
        }
        let (may_be_true, cannot) = curve.usages();
        for (t, which) in [(public, PUBLIC_ONLY), (private, PRIVATE_ONLY)] {
            for &usage in which {
                if matches!(usage, CKA_SENSITIVE | CKA_EXTRACTABLE) || may_be_true.contains(&usage)
                {
                    continue;
                }
                if t.get_bool(usage)? == Some(true) {
                    return Err(refuse(
                        CKR_ATTRIBUTE_VALUE_INVALID,
                        format_args!("{} = true refused: {cannot}", attr_name(usage)),
                    ));
                }
            }
        }
        curve.check_derive(private)?;
        private.expect_bool(CKA_SENSITIVE, true, "the private key never leaves the chip")?;
        private.expect_bool(
            CKA_EXTRACTABLE,
            false,
            "the private key never leaves the chip",
        )?;
        let params = [public.get(CKA_EC_PARAMS), private.get(CKA_EC_PARAMS)];
        if params.iter().all(Option::is_none) {
            return Err(curve.missing_params());
        }
        for params in params.into_iter().flatten() {
            curve.check_params(params, mechanism)?;
        }
        let label = shared(public, private, CKA_LABEL)?;
        let id = shared(public, private, CKA_ID)?;
        // Check lengths before touching the chip.
        KeyMetadata::new(
            0,
            true,
            label.clone().unwrap_or_default(),
            id.clone().unwrap_or_default(),
        )?;

        // Whether the user is logged in, before the cache lock (sessions order before it).
        let user_ok = self.require_user(true).is_ok();
        let mut cache = self.cache.lock();
        self.refresh(&mut cache)?;
        // With a user PIN on the chip only the user makes keys, and the chip is told that only
        // the user may use, read or delete them (and the SO delete them, for C_InitToken).
        let protected = cache.ids().any(|id| id == USER_PIN_ID);
        if protected && !user_ok {
            drop(cache);
            self.require_user(true)?;
            return Err(answer(CKR_USER_NOT_LOGGED_IN, "logged out meanwhile"));
        }
        let policy = curve.policy(protected);
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
        curve.generate(chip, key_id, &policy).map_err(|e| {
            e.to_ckr(&format!(
                "generating {} {} key pair at {key_id:#010x}",
                if curve == PairCurve::X25519 {
                    "an"
                } else {
                    "a"
                },
                curve.name()
            ))
        })?;
        let finish = (|| -> ChipResult<KeyPair> {
            let pair = curve.read_back(chip, key_id)?;
            // A version 2 record: it carries the public key (see metadata.rs). A stale version 1
            // file at this id has another length: it goes first.
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
                // Leave no half-made key behind: it would show up with the wrong label.
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

/// A label or id given in one or both templates; both must agree (a pair has one of each).
fn shared(public: &Template, private: &Template, t: CK_ATTRIBUTE_TYPE) -> Result<Option<Vec<u8>>> {
    match (public.get(t), private.get(t)) {
        (Some(a), Some(b)) if a != b => Err(refuse(
            CKR_TEMPLATE_INCONSISTENT,
            format_args!(
                "{} differs between the public and private templates; a pair shares one",
                attr_name(t)
            ),
        )),
        (a, b) => Ok(a.or(b).map(<[u8]>::to_vec)),
    }
}

/// A 4-byte CKA_ID in the customer range names the object id the pair should get.
fn requested_object_id(id: &[u8]) -> Option<u32> {
    let id = u32::from_be_bytes(id.try_into().ok()?);
    (CUSTOMER_FIRST..=CUSTOMER_LAST).contains(&id).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_four_byte_customer_ids_choose_the_object() {
        assert_eq!(requested_object_id(&[0x10, 0, 0, 1]), Some(0x1000_0001));
        assert_eq!(requested_object_id(&[0, 0, 0, 0]), None);
        assert_eq!(requested_object_id(&[0x7F, 0xFF, 0, 1]), None);
        assert_eq!(
            requested_object_id(&[0x7B, 0, 0, 1]),
            None,
            "metadata range"
        );
        assert_eq!(requested_object_id(&[1, 2, 3]), None);
        assert_eq!(requested_object_id(b"wg0-key"), None);
    }

    #[test]
    fn each_curve_keeps_its_own_rules() {
        let x = PairCurve::from_mechanism(CKM_EC_MONTGOMERY_KEY_PAIR_GEN).unwrap();
        let p = PairCurve::from_mechanism(CKM_EC_KEY_PAIR_GEN).unwrap();
        let e = PairCurve::from_mechanism(CKM_EC_EDWARDS_KEY_PAIR_GEN).unwrap();
        assert_eq!(
            PairCurve::from_mechanism(CKM_RSA_PKCS_KEY_PAIR_GEN)
                .unwrap_err()
                .rv(),
            CKR_MECHANISM_INVALID
        );
        assert_eq!(
            [x.key_type(), p.key_type(), e.key_type()],
            [CKK_EC_MONTGOMERY, CKK_EC, CKK_EC_EDWARDS]
        );
        let derives = Template::new(vec![(CKA_DERIVE, vec![1])]);
        let no_derive = Template::new(vec![(CKA_DERIVE, vec![0])]);
        assert!(x.check_derive(&derives).is_ok() && p.check_derive(&derives).is_ok());
        assert_eq!(
            x.check_derive(&no_derive).unwrap_err().rv(),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        assert_eq!(
            e.check_derive(&derives).unwrap_err().rv(),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        assert!(x.usages().0.is_empty() && p.usages().0.contains(&CKA_SIGN));
        let p256_oid = super::super::ec_keys::OID_P256;
        let x25519_oid = super::super::ec::OID_X25519;
        assert!(p.check_params(p256_oid, CKM_EC_KEY_PAIR_GEN).is_ok());
        assert!(x
            .check_params(x25519_oid, CKM_EC_MONTGOMERY_KEY_PAIR_GEN)
            .is_ok());
        assert!(x
            .check_params(p256_oid, CKM_EC_MONTGOMERY_KEY_PAIR_GEN)
            .is_err());
        assert!(e
            .check_params(p256_oid, CKM_EC_EDWARDS_KEY_PAIR_GEN)
            .is_err());
        // Unprotected: every key still gets an explicit policy, for everyone (auth object 0)
        // what the user gets under a PIN.
        for curve in [x, p, e] {
            let (unprotected, user) = (curve.policy(false), curve.policy(true)[0]);
            assert_eq!(unprotected.len(), 1, "{curve:?}");
            assert_eq!(unprotected[0].auth_object, 0);
            assert_eq!(unprotected[0].access, user.access, "{curve:?}");
        }
        assert_eq!(p.policy(true).len(), 3);
    }

    #[test]
    fn shared_attributes_must_agree() {
        let a = Template::new(vec![(CKA_LABEL, b"x".to_vec())]);
        let b = Template::new(vec![(CKA_LABEL, b"y".to_vec())]);
        let none = Template::default();
        assert_eq!(shared(&a, &none, CKA_LABEL).unwrap(), Some(b"x".to_vec()));
        assert_eq!(shared(&none, &b, CKA_LABEL).unwrap(), Some(b"y".to_vec()));
        assert_eq!(
            shared(&a, &b, CKA_LABEL).unwrap_err().rv(),
            CKR_TEMPLATE_INCONSISTENT
        );
        assert_eq!(shared(&none, &none, CKA_ID).unwrap(), None);
    }
}
