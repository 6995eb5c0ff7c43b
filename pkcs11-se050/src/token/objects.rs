//! The token objects: X25519 key pairs on the chip, each seen as a private and a public key.
//!
//! Object handles are derived from the chip's object id, so they stay the same across cache
//! refreshes and across sessions, and a handle can never silently point at another key: the
//! high half says private or public, the low half is the object id.

use super::attributes::{bool_value, ulong_value, AttrValue};
use super::chip::{Chip, ChipErrorKind, ObjectKind};
use super::ec;
use super::error::{refuse, Result};
use super::metadata::{default_id, default_label, KeyMetadata, META_BASE, META_END};
use crate::config::EcPointFormat;
use pkcs11_sys::*;
use std::collections::{BTreeMap, HashMap};

const PRIVATE_TAG: CK_OBJECT_HANDLE = 1 << 32;
const PUBLIC_TAG: CK_OBJECT_HANDLE = 2 << 32;
/// Session objects (derived secrets) get handles from here upwards.
pub const SESSION_HANDLE_BASE: CK_OBJECT_HANDLE = 3 << 32;

/// Which half of a pair a handle names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    Private,
    Public,
}

pub fn handle_of(key_id: u32, half: Half) -> CK_OBJECT_HANDLE {
    match half {
        Half::Private => PRIVATE_TAG | key_id as CK_OBJECT_HANDLE,
        Half::Public => PUBLIC_TAG | key_id as CK_OBJECT_HANDLE,
    }
}

/// Splits a token-object handle; None for anything else (session objects, garbage).
pub fn split_handle(handle: CK_OBJECT_HANDLE) -> Option<(u32, Half)> {
    let id = (handle & 0xFFFF_FFFF) as u32;
    match handle & !0xFFFF_FFFF {
        PRIVATE_TAG => Some((id, Half::Private)),
        PUBLIC_TAG => Some((id, Half::Public)),
        _ => None,
    }
}

/// One X25519 key pair on the chip, with what the token knows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub key_id: u32,
    /// RFC 7748 order.
    pub public: [u8; 32],
    pub label: Vec<u8>,
    pub id: Vec<u8>,
    /// Generated in the chip by this module (CKA_LOCAL true); unknown for foreign pairs.
    pub generated: bool,
    /// The binary file holding this pair's metadata record, if it has one.
    pub meta_file: Option<u32>,
}

impl KeyPair {
    /// The value of one attribute of either half.
    pub fn attribute(
        &self,
        half: Half,
        t: CK_ATTRIBUTE_TYPE,
        ec_point: EcPointFormat,
    ) -> AttrValue {
        use AttrValue::*;
        let private = half == Half::Private;
        let v = match t {
            CKA_CLASS => ulong_value(if private {
                CKO_PRIVATE_KEY
            } else {
                CKO_PUBLIC_KEY
            }),
            CKA_KEY_TYPE => ulong_value(CKK_EC_MONTGOMERY),
            CKA_TOKEN => bool_value(true),
            CKA_PRIVATE => bool_value(private),
            CKA_MODIFIABLE => bool_value(true),
            CKA_COPYABLE => bool_value(false),
            CKA_DESTROYABLE => bool_value(true),
            CKA_LABEL => self.label.clone(),
            CKA_ID => self.id.clone(),
            CKA_UNIQUE_ID => {
                format!("{:08X}{}", self.key_id, if private { 'S' } else { 'P' }).into_bytes()
            }
            CKA_LOCAL => bool_value(self.generated),
            CKA_KEY_GEN_MECHANISM => ulong_value(if self.generated {
                CKM_EC_MONTGOMERY_KEY_PAIR_GEN
            } else {
                CK_UNAVAILABLE_INFORMATION
            }),
            CKA_ALLOWED_MECHANISMS => ulong_value(CKM_ECDH1_DERIVE),
            CKA_START_DATE | CKA_END_DATE | CKA_SUBJECT => Vec::new(),
            CKA_DERIVE => bool_value(true),
            CKA_EC_PARAMS => ec::EC_PARAMS_CURVE25519.to_vec(),
            CKA_PUBLIC_KEY_INFO => spki(&self.public),
            // Private-key attributes.
            CKA_SIGN
            | CKA_SIGN_RECOVER
            | CKA_DECRYPT
            | CKA_UNWRAP
            | CKA_ALWAYS_AUTHENTICATE
            | CKA_WRAP_WITH_TRUSTED
                if private =>
            {
                bool_value(false)
            }
            CKA_SENSITIVE | CKA_ALWAYS_SENSITIVE | CKA_NEVER_EXTRACTABLE if private => {
                bool_value(true)
            }
            CKA_EXTRACTABLE if private => bool_value(false),
            CKA_VALUE if private => return Sensitive,
            // Public-key attributes.
            CKA_VERIFY | CKA_VERIFY_RECOVER | CKA_ENCRYPT | CKA_WRAP | CKA_TRUSTED if !private => {
                bool_value(false)
            }
            CKA_EC_POINT if !private => ec::encode_point(&self.public, ec_point),
            _ => return Invalid,
        };
        Value(v)
    }
}

/// DER SubjectPublicKeyInfo of an X25519 public key (RFC 8410).
fn spki(public: &[u8; 32]) -> Vec<u8> {
    let mut v = vec![
        0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x6E, 0x03, 0x21, 0x00,
    ];
    v.extend_from_slice(public);
    v
}

/// What the token knows of the chip's objects. Refreshed from the chip when a caller searches
/// (another process may have changed the chip); used without any chip round trip on the
/// derive path.
#[derive(Debug, Default)]
pub struct ObjectCache {
    pub pairs: BTreeMap<u32, KeyPair>,
    /// Kind of every id seen on the chip (ids never change kind while they exist).
    kinds: HashMap<u32, ObjectKind>,
    /// Metadata records found, by file id.
    records: HashMap<u32, KeyMetadata>,
    loaded: bool,
}

impl ObjectCache {
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Every id on the chip as of the last refresh.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.kinds.keys().copied()
    }

    /// Brings the cache in line with the chip: new ids are examined, vanished ones dropped,
    /// metadata records re-read (a label may have been changed by another process).
    pub fn refresh(&mut self, chip: &mut dyn Chip) -> Result<()> {
        let ids = chip.list_ids().map_err(|e| e.to_ckr("listing objects"))?;
        self.kinds.retain(|id, _| ids.contains(id));
        self.pairs.retain(|id, _| ids.contains(id));
        self.records.clear();
        for &id in &ids {
            let kind = match self.kinds.get(&id) {
                Some(kind) => *kind,
                None => {
                    let kind = match chip.kind(id) {
                        Ok(kind) => kind,
                        // Deleted between the list and now.
                        Err(e) if e.kind == ChipErrorKind::NotFound => continue,
                        // An object the chip will not describe is not one of ours.
                        Err(e) if e.kind == ChipErrorKind::Refused => {
                            log::debug!("object {id:#010x}: type not readable: {e}");
                            ObjectKind::Other
                        }
                        Err(e) => return Err(e.to_ckr(&format!("reading type of {id:#010x}"))),
                    };
                    self.kinds.insert(id, kind);
                    kind
                }
            };
            match kind {
                ObjectKind::X25519Pair if !self.pairs.contains_key(&id) => {
                    let public = match chip.read_x25519_public(id) {
                        Ok(public) => public,
                        Err(e) if e.kind == ChipErrorKind::NotFound => continue,
                        // An EC pair on another curve (its public key is not 32 bytes).
                        Err(e) if e.kind == ChipErrorKind::Refused => {
                            log::debug!("object {id:#010x} is not an X25519 pair: {e}");
                            self.kinds.insert(id, ObjectKind::Other);
                            continue;
                        }
                        Err(e) => return Err(e.to_ckr(&format!("reading public key {id:#010x}"))),
                    };
                    self.pairs.insert(
                        id,
                        KeyPair {
                            key_id: id,
                            public,
                            label: default_label(id),
                            id: default_id(id),
                            generated: false,
                            meta_file: None,
                        },
                    );
                }
                ObjectKind::BinaryFile if (META_BASE..=META_END).contains(&id) => {
                    match chip.read_binary(id) {
                        Ok(bytes) => {
                            if let Some(record) = KeyMetadata::decode(&bytes) {
                                self.records.insert(id, record);
                            }
                        }
                        // Gone, or a file the chip will not let us read: not a record of ours.
                        Err(e)
                            if matches!(
                                e.kind,
                                ChipErrorKind::NotFound | ChipErrorKind::Refused
                            ) =>
                        {
                            log::debug!("binary file {id:#010x} not read: {e}");
                        }
                        Err(e) => return Err(e.to_ckr(&format!("reading metadata {id:#010x}"))),
                    }
                }
                _ => {}
            }
        }
        self.apply_records();
        self.loaded = true;
        Ok(())
    }

    /// Gives every pair the label and id of its record, or the defaults.
    fn apply_records(&mut self) {
        for pair in self.pairs.values_mut() {
            pair.label = default_label(pair.key_id);
            pair.id = default_id(pair.key_id);
            pair.generated = false;
            pair.meta_file = None;
        }
        // Lowest file id wins if two records name one key (should not happen).
        let mut files: Vec<_> = self.records.iter().collect();
        files.sort_by_key(|(file, _)| **file);
        for (file, record) in files.into_iter().rev() {
            if let Some(pair) = self.pairs.get_mut(&record.key_id) {
                pair.label = record.label.clone();
                pair.id = record.id.clone();
                pair.generated = record.generated;
                pair.meta_file = Some(*file);
            }
        }
    }

    /// Metadata files whose key pair no longer exists (left by a crash or another tool).
    pub fn stale_records(&self) -> Vec<u32> {
        self.records
            .iter()
            .filter(|(_, r)| !self.pairs.contains_key(&r.key_id))
            .map(|(f, _)| *f)
            .collect()
    }

    /// The file of a record naming `key_id`, stale or not: a new pair at that id must reuse
    /// it, or the old record would keep giving the new key the old key's label.
    pub fn record_file_for(&self, key_id: u32) -> Option<u32> {
        self.records
            .iter()
            .filter(|(_, r)| r.key_id == key_id)
            .map(|(f, _)| *f)
            .min()
    }

    /// A free file id for a new metadata record of `key_id`: its preferred id if free, else the
    /// next free one of the metadata range, wrapping around.
    pub fn free_record_file(&self, key_id: u32) -> Result<u32> {
        let preferred = KeyMetadata::preferred_file_id(key_id);
        (preferred..=META_END)
            .chain(META_BASE..preferred)
            .find(|f| !self.is_used(*f))
            .ok_or_else(|| {
                refuse(
                    CKR_DEVICE_MEMORY,
                    "no free object id for the key's metadata",
                )
            })
    }

    pub fn insert_pair(&mut self, pair: KeyPair) {
        self.kinds.insert(pair.key_id, ObjectKind::X25519Pair);
        if let Some(file) = pair.meta_file {
            self.kinds.insert(file, ObjectKind::BinaryFile);
            let record = KeyMetadata {
                key_id: pair.key_id,
                generated: pair.generated,
                label: pair.label.clone(),
                id: pair.id.clone(),
            };
            self.records.insert(file, record);
        }
        self.pairs.insert(pair.key_id, pair);
    }

    pub fn remove_pair(&mut self, key_id: u32) {
        if let Some(pair) = self.pairs.remove(&key_id) {
            if let Some(file) = pair.meta_file {
                self.kinds.remove(&file);
                self.records.remove(&file);
            }
        }
        self.kinds.remove(&key_id);
    }

    pub fn forget(&mut self, id: u32) {
        self.kinds.remove(&id);
        self.records.remove(&id);
    }

    pub fn is_used(&self, id: u32) -> bool {
        self.kinds.contains_key(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> KeyPair {
        KeyPair {
            key_id: 0x5000_0001,
            public: [9; 32],
            label: b"wg0".to_vec(),
            id: vec![1],
            generated: true,
            meta_file: None,
        }
    }

    #[test]
    fn handles_round_trip_and_reject_others() {
        let h = handle_of(0x7000_0001, Half::Private);
        assert_eq!(split_handle(h), Some((0x7000_0001, Half::Private)));
        assert_eq!(
            split_handle(handle_of(5, Half::Public)),
            Some((5, Half::Public))
        );
        assert_eq!(split_handle(0), None);
        assert_eq!(split_handle(SESSION_HANDLE_BASE + 1), None);
        assert_ne!(handle_of(5, Half::Public), handle_of(5, Half::Private));
    }

    #[test]
    fn private_value_is_sensitive_and_public_has_its_point() {
        let p = pair();
        assert_eq!(
            p.attribute(Half::Private, CKA_VALUE, EcPointFormat::Der),
            AttrValue::Sensitive
        );
        assert_eq!(
            p.attribute(Half::Private, CKA_EC_POINT, EcPointFormat::Der),
            AttrValue::Invalid
        );
        let AttrValue::Value(point) = p.attribute(Half::Public, CKA_EC_POINT, EcPointFormat::Der)
        else {
            panic!("no point")
        };
        assert_eq!(point.len(), 34);
        assert_eq!(
            p.attribute(Half::Public, CKA_EC_POINT, EcPointFormat::Raw),
            AttrValue::Value(vec![9; 32])
        );
        assert_eq!(
            p.attribute(Half::Private, CKA_SENSITIVE, EcPointFormat::Der),
            AttrValue::Value(vec![1])
        );
        assert_eq!(
            p.attribute(Half::Public, CKA_SENSITIVE, EcPointFormat::Der),
            AttrValue::Invalid
        );
        assert_eq!(
            p.attribute(Half::Public, 0x8000_1234, EcPointFormat::Der),
            AttrValue::Invalid
        );
    }
}
