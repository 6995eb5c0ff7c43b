//! The token objects: X25519 key pairs on the chip, each seen as a private and a public key.
//!
//! A handle is bound to the chip object it was made for: to its object id *and* its public key
//! (which names the private key). A CK_OBJECT_HANDLE is a CK_ULONG, 32 bits on armhf: too narrow
//! to carry a 32-bit object id and more. So the handle is a hash of the object id and the public
//! key (the lowest bit says public), and a table of the process ([`HANDLES`]) holds what each
//! handle was made for: the same key gets the same handle in every process and across C_Finalize
//! (unless two keys' hashes collide: the second then takes the next free number), and a handle is
//! never given to another key in a process. If another process deletes a pair and generates a new
//! one at the same id, the new key gets another handle and the old handles name a key that no
//! longer exists (CKR_OBJECT_HANDLE_INVALID / CKR_KEY_HANDLE_INVALID), never the new key.
//!
//! Each half of a pair is its own PKCS#11 object and can be destroyed alone: see `metadata.rs`
//! for where a public key whose private half was destroyed is kept (its metadata record).

use super::attributes::{bool_value, ulong_value, AttrValue};
use super::certificate::{Certificate, CERT_BASE, CERT_END};
use super::chip::{Chip, ChipErrorKind, EcCurve, ObjectKind};
use super::ec;
use super::error::{refuse, Result};
use super::metadata::{default_id, default_label, KeyMetadata, META_BASE, META_END};
use crate::config::EcPointFormat;
use pkcs11_sys::*;
use std::collections::{BTreeMap, HashMap};

/// Session objects (derived secrets) get handles from here upwards: the top bit of a CK_ULONG,
/// whatever its width. Token objects get the handles below it.
pub const SESSION_HANDLE_BASE: CK_OBJECT_HANDLE = 1 << (CK_OBJECT_HANDLE::BITS - 1);

/// Which half of a pair a handle names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Half {
    Private,
    Public,
}

/// Every token-object handle given out in this process and what it was made for. One table for
/// the process, not one per ObjectCache: a C_Finalize / C_Initialize makes a new cache, and a
/// handle must keep naming its key, and no other, across it.
static HANDLES: parking_lot::Mutex<HandleTable> =
    parking_lot::Mutex::new(HandleTable { by_handle: None });

struct HandleTable {
    /// handle -> binding and binding -> handle (None until the first handle).
    by_handle: Option<(
        HashMap<CK_OBJECT_HANDLE, Binding>,
        HashMap<Binding, CK_OBJECT_HANDLE>,
    )>,
}

/// Token-object handles are `number << 1 | half` with number in 1..NUMBERS: below the top bit
/// of a CK_ULONG, where the session objects' handles start.
const NUMBERS: u64 = 1 << (CK_OBJECT_HANDLE::BITS - 2);
/// How far past its hash a key's handle may move when other keys hold the numbers there.
const MAX_PROBES: u64 = 1 << 16;

/// FNV-1a (64 bits) of the object id and the public key: the same number in every process and
/// every build of this module, so a key's handle survives a C_Finalize, even a dlclose.
fn key_hash(key_id: u32, public: &[u8; 32]) -> u64 {
    key_id
        .to_be_bytes()
        .iter()
        .chain(public)
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

impl HandleTable {
    /// The handle of `binding`, made on first use. None when every number near its hash is
    /// taken by other keys: never a handle that names another key.
    fn handle(&mut self, binding: Binding) -> Option<CK_OBJECT_HANDLE> {
        let (handles, bound) = self.by_handle.get_or_insert_with(Default::default);
        if let Some(handle) = bound.get(&binding) {
            return Some(*handle);
        }
        let half_bit = match binding.half {
            Half::Private => 0,
            Half::Public => 1,
        };
        let first = key_hash(binding.key_id, &binding.public) % (NUMBERS - 1) + 1;
        for probe in 0..MAX_PROBES {
            let number = (first - 1 + probe) % (NUMBERS - 1) + 1;
            let handle = (number as CK_OBJECT_HANDLE) << 1 | half_bit;
            if let std::collections::hash_map::Entry::Vacant(free) = handles.entry(handle) {
                free.insert(binding);
                bound.insert(binding, handle);
                return Some(handle);
            }
        }
        None
    }

    fn binding(&self, handle: CK_OBJECT_HANDLE) -> Option<Binding> {
        self.by_handle.as_ref()?.0.get(&handle).copied()
    }
}

/// What a token-object handle was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Binding {
    /// The key's object id, or a certificate's file id.
    key_id: u32,
    half: Half,
    /// The key's public key, or the SHA-256 of a certificate's DER value.
    public: [u8; 32],
    /// A certificate (token/certificate.rs), not a key.
    certificate: bool,
}

/// The handle of the certificate in `file` whose DER value is `value`: from the same table as
/// the keys' handles, so that a key's handle never names a certificate (nor the other way), on
/// any CK_ULONG width. None when every number near its hash is taken.
pub fn certificate_handle(file: u32, value: &[u8]) -> Option<CK_OBJECT_HANDLE> {
    use sha2::Digest;
    HANDLES.lock().handle(Binding {
        key_id: file,
        half: Half::Public,
        public: sha2::Sha256::digest(value).into(),
        certificate: true,
    })
}

/// The certificate file a handle was made for, and the SHA-256 of the value it named; None for
/// a key's handle or an unknown one.
pub fn certificate_binding(handle: CK_OBJECT_HANDLE) -> Option<(u32, [u8; 32])> {
    let binding = HANDLES.lock().binding(handle)?;
    binding
        .certificate
        .then_some((binding.key_id, binding.public))
}

/// Which half a token-object handle names; None for anything else (session objects, 0). Which
/// object it names is [`ObjectCache::resolve`]'s business.
pub fn split_handle(handle: CK_OBJECT_HANDLE) -> Option<Half> {
    if handle >> 1 == 0 || handle >= SESSION_HANDLE_BASE {
        return None;
    }
    match handle & 1 {
        0 => Some(Half::Private),
        _ => Some(Half::Public),
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

    /// The value of one attribute of either half.
    pub fn attribute(
        &self,
        half: Half,
        t: CK_ATTRIBUTE_TYPE,
        ec_point: EcPointFormat,
    ) -> AttrValue {
        use AttrValue::*;
        if let Some(curve) = self.ec {
            if let Some(value) = super::ec_keys::attribute(self, curve, half, t) {
                return value;
            }
        }
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
        let binding = Binding {
            key_id,
            half,
            public: pair.public,
            certificate: false,
        };
        HANDLES.lock().handle(binding)
    }

    /// The pair and half a handle names, if that very object still exists: same object id,
    /// same public key, that half not destroyed.
    pub fn resolve(&self, handle: CK_OBJECT_HANDLE) -> Option<(&KeyPair, Half)> {
        let binding = HANDLES.lock().binding(handle)?;
        if binding.certificate {
            return None;
        }
        let pair = self.pairs.get(&binding.key_id)?;
        (pair.public == binding.public && pair.has(binding.half)).then_some((pair, binding.half))
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
                    if let Some(pair) = super::ec_keys::read_pair(chip, id, curve)? {
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

    #[test]
    fn handles_fit_a_ulong_survive_a_new_table_and_never_change_key() {
        let a = Binding {
            key_id: 0x5000_0001,
            half: Half::Private,
            public: [1; 32],
            certificate: false,
        };
        let b = Binding {
            key_id: 0x5000_0002,
            public: [2; 32],
            ..a
        };
        let mut table = HandleTable { by_handle: None };
        let handle_a = table.handle(a).unwrap();
        // The same key, the same handle: in another table (a new process, after a dlclose).
        assert_eq!(HandleTable { by_handle: None }.handle(a), Some(handle_a));
        assert!(handle_a > 1 && handle_a < SESSION_HANDLE_BASE);
        assert_eq!(split_handle(handle_a), Some(Half::Private));
        // b's own number already names another key (a collision): b moves on, a is untouched.
        let natural_b =
            ((key_hash(b.key_id, &b.public) % (NUMBERS - 1) + 1) as CK_OBJECT_HANDLE) << 1;
        let mut table = HandleTable { by_handle: None };
        let (handles, bound) = table.by_handle.get_or_insert_with(Default::default);
        handles.insert(natural_b, a);
        bound.insert(a, natural_b);
        let handle_b = table.handle(b).unwrap();
        assert_ne!(handle_b, natural_b);
        assert_eq!(table.binding(natural_b), Some(a));
        assert_eq!(table.binding(handle_b), Some(b));
        assert_eq!(table.handle(b), Some(handle_b));
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
