//! The object store: the key pairs on the chip (X25519, P-256, Ed25519), each seen as a private
//! and a public key, and the cache of what the token knows of the chip's objects, read from the
//! chip. Their handles: handles.rs. Below the kinds of object (key_attributes.rs, ec_keys.rs,
//! certificate.rs, pin.rs): it imports none of them.
//!
//! Each half of a pair is its own PKCS#11 object and can be destroyed alone: see `metadata.rs`
//! for where a public key whose private half was destroyed is kept (its metadata record).

use super::certificate_file::{Certificate, CERT_BASE, CERT_END};
use super::chip::{Chip, ChipErrorKind, EcCurve, ObjectKind};
use super::error::{refuse, Result};
use super::handles::{key_binding, key_handle, Half};
use super::metadata::{default_id, default_label, KeyMetadata, META_BASE, META_END};
use pkcs11_sys::*;
use std::collections::{BTreeMap, HashMap};

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
    /// That record is a version 2 one (it carries the public key).
    pub meta_v2: bool,
    /// The private half exists: the chip holds the pair. False once it was destroyed while the
    /// public half lives on in the metadata record.
    pub has_private: bool,
    /// The public half exists (not destroyed on its own).
    pub has_public: bool,
    /// None: an X25519 pair; else a P-256 or Ed25519 pair (token/ec_keys.rs), whose `public`
    /// is the Ed25519 key or P-256's x coordinate (what a handle is bound to) and `point`
    /// P-256's whole uncompressed point.
    pub ec: Option<EcCurve>,
    pub point: Vec<u8>,
}

impl KeyPair {
    /// A pair found on the chip (or just generated), both halves present, default names.
    pub fn on_chip(key_id: u32, public: [u8; 32]) -> KeyPair {
        KeyPair {
            key_id,
            public,
            label: default_label(key_id),
            id: default_id(key_id),
            generated: false,
            meta_file: None,
            meta_v2: false,
            has_private: true,
            has_public: true,
            ec: None,
            point: Vec::new(),
        }
    }

    pub fn has(&self, half: Half) -> bool {
        match half {
            Half::Private => self.has_private,
            Half::Public => self.has_public,
        }
    }

    /// The metadata record describing this pair as it is now (version 2: with its public key).
    pub fn record(&self) -> KeyMetadata {
        KeyMetadata {
            key_id: self.key_id,
            generated: self.generated,
            label: self.label.clone(),
            id: self.id.clone(),
            public: Some(self.public),
            public_destroyed: !self.has_public,
            private_destroyed: !self.has_private,
        }
    }
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
    /// X.509 certificates on the chip, by file id (certificate.rs).
    pub certs: BTreeMap<u32, Certificate>,
}

impl ObjectCache {
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// The metadata records found at the last refresh, by file id.
    pub fn records(&self) -> impl Iterator<Item = (u32, &KeyMetadata)> + '_ {
        self.records.iter().map(|(file, record)| (*file, record))
    }

    /// Every id on the chip as of the last refresh.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.kinds.keys().copied()
    }

    /// The handle of one half of the pair at `key_id` as it is now (None if there is none).
    pub fn handle(&mut self, key_id: u32, half: Half) -> Option<CK_OBJECT_HANDLE> {
        let pair = self.pairs.get(&key_id)?;
        key_handle(key_id, half, pair.public)
    }

    /// The pair and half a handle names, if that very object still exists: same object id,
    /// same public key, that half not destroyed.
    pub fn resolve(&self, handle: CK_OBJECT_HANDLE) -> Option<(&KeyPair, Half)> {
        let (key_id, half, public) = key_binding(handle)?;
        let pair = self.pairs.get(&key_id)?;
        (pair.public == public && pair.has(half)).then_some((pair, half))
    }

    /// Brings the cache in line with the chip: new ids are examined, vanished ones dropped,
    /// public keys and metadata records re-read (another process may have replaced a pair at
    /// the same id, or changed a label).
    pub fn refresh(&mut self, chip: &mut dyn Chip) -> Result<()> {
        let ids = chip.list_ids().map_err(|e| e.to_ckr("listing objects"))?;
        self.kinds.retain(|id, _| ids.contains(id));
        self.pairs.retain(|id, _| ids.contains(id));
        self.certs.retain(|id, _| ids.contains(id));
        self.records.clear();
        // Pairs whose policy keeps their public key from us (outside the user's session).
        let mut protected = Vec::new();
        for &id in &ids {
            let kind = match self.kinds.get(&id) {
                Some(kind) => *kind,
                None => {
                    let kind = match chip.kind(id) {
                        Ok(kind) => kind,
                        // Deleted between the list and now.
                        Err(e) if e.kind == ChipErrorKind::NotFound => continue,
                        // An object the chip will not describe is not one of ours.
                        Err(e)
                            if matches!(e.kind, ChipErrorKind::Refused | ChipErrorKind::Denied) =>
                        {
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
                ObjectKind::X25519Pair => {
                    let public = match chip.read_x25519_public(id) {
                        Ok(public) => public,
                        Err(e) if e.kind == ChipErrorKind::NotFound => continue,
                        // A key made while a user PIN existed, outside the user's session: its
                        // public key comes from its metadata record (below), if it has one.
                        Err(e) if e.kind == ChipErrorKind::Denied => {
                            protected.push(id);
                            continue;
                        }
                        // An EC pair on another curve (its public key is not 32 bytes).
                        Err(e) if e.kind == ChipErrorKind::Refused => {
                            log::debug!("object {id:#010x} is not an X25519 pair: {e}");
                            self.kinds.insert(id, ObjectKind::Other);
                            continue;
                        }
                        Err(e) => return Err(e.to_ckr(&format!("reading public key {id:#010x}"))),
                    };
                    // A pair regenerated at this id is a new object: old handles stay unbound.
                    if self.pairs.get(&id).map(|p| p.public) != Some(public) {
                        self.pairs.insert(id, KeyPair::on_chip(id, public));
                    }
                }
                ObjectKind::EcPair(curve) => {
                    if let Some(pair) = read_pair(chip, id, curve)? {
                        if self.pairs.get(&id).map(|p| p.public) != Some(pair.public) {
                            self.pairs.insert(id, pair);
                        }
                    }
                }
                ObjectKind::BinaryFile
                    if (CERT_BASE..=CERT_END).contains(&id) && !self.certs.contains_key(&id) =>
                {
                    // A certificate never changes in place (CKA_MODIFIABLE false): read once.
                    match chip.read_binary(id) {
                        Ok(bytes) => {
                            if let Some(cert) = Certificate::decode(id, &bytes) {
                                self.certs.insert(id, cert);
                            }
                        }
                        Err(e)
                            if matches!(
                                e.kind,
                                ChipErrorKind::NotFound
                                    | ChipErrorKind::Refused
                                    | ChipErrorKind::Denied
                            ) =>
                        {
                            log::debug!("binary file {id:#010x} not read: {e}");
                        }
                        Err(e) => return Err(e.to_ckr(&format!("reading certificate {id:#010x}"))),
                    }
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
                                ChipErrorKind::NotFound
                                    | ChipErrorKind::Refused
                                    | ChipErrorKind::Denied
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
        for id in protected {
            let public = self
                .records
                .values()
                .filter(|r| r.key_id == id && !r.private_destroyed)
                .find_map(|r| r.public);
            match public {
                Some(public) => {
                    if self.pairs.get(&id).map(|p| p.public) != Some(public) {
                        self.pairs.insert(id, KeyPair::on_chip(id, public));
                    }
                }
                None => {
                    self.pairs.remove(&id);
                }
            }
        }
        self.apply_records();
        self.loaded = true;
        Ok(())
    }

    /// Gives every pair the label and id of its record, or the defaults; adds the public keys
    /// whose private half was destroyed (kept in their records).
    fn apply_records(&mut self) {
        // Only pairs on the chip came from the listing; public-only ones come from records.
        self.pairs.retain(|_, pair| pair.has_private);
        for pair in self.pairs.values_mut() {
            let (ec, point) = (pair.ec, std::mem::take(&mut pair.point));
            *pair = KeyPair {
                ec,
                point,
                ..KeyPair::on_chip(pair.key_id, pair.public)
            };
        }
        // Lowest file id wins if two records name one key (should not happen).
        let mut files: Vec<_> = self.records.iter().collect();
        files.sort_by_key(|(file, _)| **file);
        for (file, record) in files.into_iter().rev() {
            if record.private_destroyed {
                // The chip's pair is gone; the record holds the public key. A pair on the chip
                // at the same id is a newer key that this record does not describe.
                if let (Some(public), false) =
                    (record.public, self.kinds.contains_key(&record.key_id))
                {
                    let mut pair = KeyPair::on_chip(record.key_id, public);
                    pair.has_private = false;
                    apply(&mut pair, *file, record);
                    self.pairs.insert(record.key_id, pair);
                }
                continue;
            }
            if let Some(pair) = self.pairs.get_mut(&record.key_id) {
                if record.public.is_some_and(|p| p != pair.public) {
                    continue; // the record of an older key at this id
                }
                apply(pair, *file, record);
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
        if pair.has_private {
            let kind = match pair.ec {
                Some(curve) => ObjectKind::EcPair(curve),
                None => ObjectKind::X25519Pair,
            };
            self.kinds.insert(pair.key_id, kind);
        } else {
            self.kinds.remove(&pair.key_id);
        }
        if let Some(file) = pair.meta_file {
            self.kinds.insert(file, ObjectKind::BinaryFile);
            let mut record = pair.record();
            if !pair.meta_v2 {
                record.public = None;
            }
            self.records.insert(file, record);
        }
        self.pairs.insert(pair.key_id, pair);
    }

    pub fn insert_certificate(&mut self, cert: Certificate) {
        self.kinds.insert(cert.file, ObjectKind::BinaryFile);
        self.certs.insert(cert.file, cert);
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

    /// Used on the chip, or by a public key whose private half was destroyed (a new pair
    /// there would take over its record).
    pub fn is_used(&self, id: u32) -> bool {
        self.kinds.contains_key(&id) || self.pairs.contains_key(&id)
    }
}

/// A record's names on its pair.
fn apply(pair: &mut KeyPair, file: u32, record: &KeyMetadata) {
    pair.label = record.label.clone();
    pair.id = record.id.clone();
    pair.generated = record.generated;
    pair.meta_file = Some(file);
    pair.meta_v2 = record.public.is_some();
    pair.has_public = !record.public_destroyed;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::handles::{split_handle, SESSION_HANDLE_BASE};

    fn pair() -> KeyPair {
        KeyPair {
            label: b"wg0".to_vec(),
            id: vec![1],
            generated: true,
            ..KeyPair::on_chip(0x5000_0001, [9; 32])
        }
    }

    #[test]
    fn handles_are_bound_to_the_object_they_were_made_for() {
        let mut cache = ObjectCache::default();
        cache.insert_pair(pair());
        let private = cache.handle(0x5000_0001, Half::Private).unwrap();
        let public = cache.handle(0x5000_0001, Half::Public).unwrap();
        assert_ne!(private, public);
        assert_eq!(cache.handle(0x5000_0001, Half::Private), Some(private));
        assert_eq!(split_handle(private), Some(Half::Private));
        assert_eq!(split_handle(public), Some(Half::Public));
        assert_eq!(split_handle(0), None);
        assert_eq!(split_handle(1), None);
        assert_eq!(split_handle(SESSION_HANDLE_BASE + 1), None);
        assert_eq!(cache.resolve(private).map(|(_, h)| h), Some(Half::Private));
        // Another key at the same object id: the old handles name nothing.
        cache.insert_pair(KeyPair::on_chip(0x5000_0001, [10; 32]));
        assert!(cache.resolve(private).is_none() && cache.resolve(public).is_none());
        let new_private = cache.handle(0x5000_0001, Half::Private).unwrap();
        assert_ne!(new_private, private);
        assert!(cache.resolve(new_private).is_some());
        assert!(cache.resolve(0x1234).is_none());
    }
}
