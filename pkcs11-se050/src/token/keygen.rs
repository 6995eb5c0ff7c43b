//! C_GenerateKeyPair with CKM_EC_MONTGOMERY_KEY_PAIR_GEN: an X25519 pair made inside the chip.
//!
//! Templates are checked strictly, because whatever they promise must be true of a key that
//! lives on the chip: it always derives, never signs, never leaves, and is always a token
//! object. CKA_SIGN / CKA_VERIFY (which Debian 12's pkcs11-tool puts in its templates unless
//! given `--usage-derive`) are refused with a message saying so, rather than accepted and then
//! silently reported false.

use super::attributes::{attr_name, Template, KEY_TEMPLATE_COMMON};
use super::chip::ChipErrorKind;
use super::chip::PolicyEntry;
use super::ec::check_ec_params;
use super::error::{refuse, Result};
use super::metadata::{default_id, default_label, KeyMetadata, META_BASE};
use super::objects::{Half, KeyPair};
use super::pin::{key_policy, USER_PIN_ID};
use super::Token;
use pkcs11_sys::*;

/// Where new key pairs are placed when the caller does not choose an object id.
pub const KEY_BASE: u32 = 0x5000_0000;
/// The customer range of object ids below the metadata files.
pub const CUSTOMER_FIRST: u32 = 0x0000_0001;
pub const CUSTOMER_LAST: u32 = META_BASE - 1;

/// What both halves' templates may name besides KEY_TEMPLATE_COMMON.
pub(super) const PAIR_COMMON: &[CK_ATTRIBUTE_TYPE] =
    &[CKA_EC_PARAMS, CKA_SUBJECT, CKA_ALLOWED_MECHANISMS];
pub(super) const PUBLIC_ONLY: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_VERIFY,
    CKA_VERIFY_RECOVER,
    CKA_ENCRYPT,
    CKA_WRAP,
    CKA_TRUSTED,
];
pub(super) const PRIVATE_ONLY: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_SIGN,
    CKA_SIGN_RECOVER,
    CKA_DECRYPT,
    CKA_UNWRAP,
    CKA_SENSITIVE,
    CKA_EXTRACTABLE,
    CKA_ALWAYS_AUTHENTICATE,
    CKA_WRAP_WITH_TRUSTED,
];

const CANNOT: &str = "X25519 keys only do key agreement (CKA_DERIVE); they cannot sign, verify, \
                      encrypt or wrap. With pkcs11-tool use --usage-derive";

impl Token {
    pub fn generate_key_pair(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        public: &Template,
        private: &Template,
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
        self.check_session(session, true)?;
        if matches!(mechanism, CKM_EC_KEY_PAIR_GEN | CKM_EC_EDWARDS_KEY_PAIR_GEN) {
            return self.generate_ec_pair(mechanism, public, private);
        }
        if mechanism != CKM_EC_MONTGOMERY_KEY_PAIR_GEN {
            return Err(refuse(
                CKR_MECHANISM_INVALID,
                format_args!("key pair generation with mechanism {mechanism:#x}; only CKM_EC_MONTGOMERY_KEY_PAIR_GEN, CKM_EC_KEY_PAIR_GEN (P-256) and CKM_EC_EDWARDS_KEY_PAIR_GEN (Ed25519)"),
            ));
        }
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
                if kt != CKK_EC_MONTGOMERY {
                    return Err(refuse(
                        CKR_TEMPLATE_INCONSISTENT,
                        format_args!(
                            "CKA_KEY_TYPE {kt:#x}; this mechanism makes CKK_EC_MONTGOMERY keys"
                        ),
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
            t.expect_bool(
                CKA_MODIFIABLE,
                true,
                "label and id of chip keys stay modifiable",
            )?;
        }
        for (t, which) in [(public, PUBLIC_ONLY), (private, PRIVATE_ONLY)] {
            for &usage in which {
                if matches!(usage, CKA_SENSITIVE | CKA_EXTRACTABLE) {
                    continue;
                }
                if t.get_bool(usage)? == Some(true) {
                    return Err(refuse(
                        CKR_ATTRIBUTE_VALUE_INVALID,
                        format_args!("{} = true refused: {CANNOT}", attr_name(usage)),
                    ));
                }
            }
        }
        private.expect_bool(
            CKA_DERIVE,
            true,
            "the private key of an X25519 pair always derives",
        )?;
        private.expect_bool(CKA_SENSITIVE, true, "the private key never leaves the chip")?;
        private.expect_bool(
            CKA_EXTRACTABLE,
            false,
            "the private key never leaves the chip",
        )?;

        match (public.get(CKA_EC_PARAMS), private.get(CKA_EC_PARAMS)) {
            (None, None) => {
                return Err(refuse(
                    CKR_TEMPLATE_INCOMPLETE,
                    "CKA_EC_PARAMS missing from the public key template (use curve25519)",
                ))
            }
            (a, b) => {
                for params in [a, b].into_iter().flatten() {
                    check_ec_params(params)?;
                }
            }
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
            return Err(super::error::answer(
                CKR_USER_NOT_LOGGED_IN,
                "logged out meanwhile",
            ));
        }
        // Without a PIN the key still gets an explicit policy, so that its attestation shows
        // what it allows (token/attest.rs): no policy would mean the chip's default, which a
        // verifier cannot tell from "everything".
        let unprotected = super::attest::unprotected_key_policy();
        let policy: &[PolicyEntry] = if protected {
            &key_policy()
        } else {
            &unprotected
        };
        let key_id = match id.as_deref().and_then(requested_object_id) {
            Some(wanted) => {
                if cache.is_used(wanted) {
                    return Err(refuse(
                        CKR_ATTRIBUTE_VALUE_INVALID,
                        format_args!("CKA_ID asks for object id {wanted:#010x}, which is already used on the chip"),
                    ));
                }
                wanted
            }
            None => (KEY_BASE..CUSTOMER_LAST)
                .find(|i| !cache.is_used(*i))
                .ok_or_else(|| {
                    refuse(
                        CKR_DEVICE_MEMORY,
                        "no free object id left in the customer range",
                    )
                })?,
        };
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
        chip.generate_x25519_with_policy(key_id, policy)
            .map_err(|e| e.to_ckr(&format!("generating an X25519 key pair at {key_id:#010x}")))?;
        let finish = (|| -> super::chip::ChipResult<[u8; 32]> {
            let public = chip.read_x25519_public(key_id)?;
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
                &record.clone().with_public(public).encode(),
                record_policy,
            )?;
            Ok(public)
        })();
        let public_key = match finish {
            Ok(public) => public,
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
            "generated X25519 key pair {key_id:#010x} ({})",
            String::from_utf8_lossy(&label)
        );
        cache.forget(meta_file);
        cache.insert_pair(KeyPair {
            label,
            id,
            generated: true,
            meta_file: Some(meta_file),
            meta_v2: true,
            ..KeyPair::on_chip(key_id, public_key)
        });
        let handle = |cache: &mut super::objects::ObjectCache, half| {
            cache
                .handle(key_id, half)
                .ok_or_else(|| refuse(CKR_GENERAL_ERROR, "no object handle left in this process"))
        };
        Ok((
            handle(&mut cache, Half::Public)?,
            handle(&mut cache, Half::Private)?,
        ))
    }
}

/// A label or id given in one or both templates; both must agree (a pair has one of each).
pub(super) fn shared(
    public: &Template,
    private: &Template,
    t: CK_ATTRIBUTE_TYPE,
) -> Result<Option<Vec<u8>>> {
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
pub(super) fn requested_object_id(id: &[u8]) -> Option<u32> {
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
