//! The virtual chip's state in memory (objects, their policies, origins and creators) and its
//! file format.
//!
//! # File format (version 3; versions 1 and 2 still load)
//!
//! ```text
//! magic       8 bytes  "VSE050ST"
//! version     u16 LE   3 (1: without origin and creator; 2: without curves)
//! count       u32 LE   number of objects
//! objects     count x:
//!   id        u32 BE
//!   kind      u8       1 X25519 pair, 2 X25519 private key, 3 AES key, 4 binary file,
//!                      5 UserID (authentication object), 6 NIST P-256 pair, 7 Ed25519 pair
//!   policy    u16 LE length, then the policy TLV value as received (0: no policy)
//!   origin    u8       (version 2 only) 01 external, 02 internal, 03 NXP provisioned
//!   creator   u32 BE   (version 2 only) the authentication object that created it (0: none)
//!   payload   u32 LE length, then:
//!               pair:    private key (32, chip order) || public key (32, chip order)
//!               private: private key (32, chip order)
//!               AES:     key bytes
//!               file:    file bytes
//!               UserID:  max attempts (u16 BE) || failed attempts (u16 BE) || value (4..=16)
//!               P-256:   private scalar (32, BE) || public point 04 || X || Y (65)
//!               Ed25519: private key (32, RFC 8032 order, as NXP writes it) ||
//!                        public key (32, reversed: the chip's order, see ec.rs)
//! curves      (version 3 only) u8 count, then count x: curve id u8 || parameters set u8
//!                      (CreateECCurve / SetECCurveParam, see applet/curves.rs)
//! crc         u32 LE   CRC-32/ISO-HDLC of everything before it
//! ```
//!
//! A version-1 file is read with the origin the chip of that build answered (X25519 pairs
//! internal, everything else external) and creator 0; a version-1 or 2 file has no curves
//! created; both are written back as version 3.
//! The attestation key and its certificate are added to a state that has none (a version-1
//! file) the first time the applet runs a command on it (see `attestation.rs`).
//!

use crate::protocol::{
    ATTESTATION_CERTIFICATE, ATTESTATION_KEY, ORIGIN_EXTERNAL, ORIGIN_INTERNAL, ORIGIN_PROVISIONED,
    UNIQUE_ID, UNIQUE_ID_LEN,
};
use rand_core::{OsRng, RngCore};
use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroizing;

pub(crate) const MAGIC: &[u8; 8] = b"VSE050ST";
pub(crate) const FORMAT_VERSION: u16 = 3;
pub(crate) const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The NVM a real SE050 offers for objects (about 50 KB).
pub const NVM_CAPACITY: usize = 50 * 1024;
/// Bookkeeping each object costs in NVM besides its contents.
pub const OBJECT_OVERHEAD: usize = 48;
/// The most objects the chip holds, whatever their size.
pub const MAX_OBJECTS: usize = 512;

/// NXP-provisioned objects of a fresh virtual chip (besides the unique id): the attestation
/// key (0xF0000012, the id NXP's middleware uses: fsl_sss_se05x_apis.c
/// `SSS_SE05X_RESID_ATTESTATION_KEY`), its certificate (0xF0000013, the id AN12436 gives the
/// ECC attestation key's certificate), and a secret standing for NXP's other provisioned keys.
pub const PROVISIONED_CERTIFICATE: u32 = crate::protocol::ATTESTATION_CERTIFICATE;
pub const PROVISIONED_SECRET: u32 = 0xF000_0100;

/// The contents of one secure object.
#[derive(Clone, PartialEq, Eq)]
pub enum ObjectData {
    /// An X25519 key pair; both halves in the chip's (big-endian) order.
    X25519Pair {
        private: Zeroizing<[u8; 32]>,
        public: [u8; 32],
    },
    /// An X25519 private key without its public half (imported).
    X25519Private { private: Zeroizing<[u8; 32]> },
    /// A symmetric AES key.
    AesKey { key: Zeroizing<Vec<u8>> },
    /// A binary file; its size is fixed at creation.
    BinaryFile { data: Vec<u8> },
    /// A UserID authentication object (a PIN): its value, the attempts allowed, and the failed
    /// attempts since the last success (persistent, as on the chip: a reset does not clear it).
    UserId {
        value: Zeroizing<Vec<u8>>,
        max_attempts: u16,
        failures: u16,
    },
    /// A NIST P-256 key pair: the private scalar (big-endian) and the public point as the chip
    /// answers it, uncompressed (04 || X || Y).
    P256Pair {
        private: Zeroizing<[u8; 32]>,
        public: [u8; 65],
    },
    /// An Ed25519 key pair: the private key as RFC 8032 writes it (NXP's middleware sends it
    /// unreversed) and the public key reversed, as the chip keeps and answers it (ec.rs).
    Ed25519Pair {
        private: Zeroizing<[u8; 32]>,
        public: [u8; 32],
    },
}

impl fmt::Debug for ObjectData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        match self {
            ObjectData::X25519Pair { .. } => f.write_str("X25519Pair"),
            ObjectData::X25519Private { .. } => f.write_str("X25519Private"),
            ObjectData::AesKey { key } => write!(f, "AesKey({} bytes)", key.len()),
            ObjectData::BinaryFile { data } => write!(f, "BinaryFile({} bytes)", data.len()),
            ObjectData::UserId {
                max_attempts,
                failures,
                ..
            } => write!(f, "UserId({failures}/{max_attempts} failures)"),
            ObjectData::P256Pair { .. } => f.write_str("P256Pair"),
            ObjectData::Ed25519Pair { .. } => f.write_str("Ed25519Pair"),
        }
    }
}

impl ObjectData {
    fn kind(&self) -> u8 {
        match self {
            ObjectData::X25519Pair { .. } => 1,
            ObjectData::X25519Private { .. } => 2,
            ObjectData::AesKey { .. } => 3,
            ObjectData::BinaryFile { .. } => 4,
            ObjectData::UserId { .. } => 5,
            ObjectData::P256Pair { .. } => 6,
            ObjectData::Ed25519Pair { .. } => 7,
        }
    }

    fn payload(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match self {
            ObjectData::X25519Pair { private, public } => {
                let mut out = private.to_vec();
                out.extend_from_slice(public);
                out
            }
            ObjectData::X25519Private { private } => private.to_vec(),
            ObjectData::AesKey { key } => key.to_vec(),
            ObjectData::BinaryFile { data } => data.clone(),
            ObjectData::UserId {
                value,
                max_attempts,
                failures,
            } => {
                let mut out = max_attempts.to_be_bytes().to_vec();
                out.extend_from_slice(&failures.to_be_bytes());
                out.extend_from_slice(value);
                out
            }
            ObjectData::P256Pair { private, public } => {
                let mut out = private.to_vec();
                out.extend_from_slice(public);
                out
            }
            ObjectData::Ed25519Pair { private, public } => {
                let mut out = private.to_vec();
                out.extend_from_slice(public);
                out
            }
        })
    }

    fn from_parts(kind: u8, payload: &[u8]) -> Option<Self> {
        let key32 = |bytes: &[u8]| -> Option<Zeroizing<[u8; 32]>> {
            Some(Zeroizing::new(bytes.try_into().ok()?))
        };
        match kind {
            1 if payload.len() == 64 => Some(ObjectData::X25519Pair {
                private: key32(&payload[..32])?,
                public: payload[32..].try_into().ok()?,
            }),
            2 => Some(ObjectData::X25519Private {
                private: key32(payload)?,
            }),
            3 if matches!(payload.len(), 16 | 24 | 32) => Some(ObjectData::AesKey {
                key: Zeroizing::new(payload.to_vec()),
            }),
            4 if !payload.is_empty() => Some(ObjectData::BinaryFile {
                data: payload.to_vec(),
            }),
            5 if (4 + 4..=4 + 16).contains(&payload.len()) => Some(ObjectData::UserId {
                max_attempts: u16::from_be_bytes([payload[0], payload[1]]),
                failures: u16::from_be_bytes([payload[2], payload[3]]),
                value: Zeroizing::new(payload[4..].to_vec()),
            }),
            6 if payload.len() == 32 + 65 && payload[32] == 0x04 => Some(ObjectData::P256Pair {
                private: key32(&payload[..32])?,
                public: payload[32..].try_into().ok()?,
            }),
            7 if payload.len() == 64 => Some(ObjectData::Ed25519Pair {
                private: key32(&payload[..32])?,
                public: payload[32..].try_into().ok()?,
            }),
            _ => None,
        }
    }

    /// Bytes of contents, for the NVM bound.
    pub fn size(&self) -> usize {
        match self {
            ObjectData::X25519Pair { .. } => 64,
            ObjectData::X25519Private { .. } => 32,
            ObjectData::AesKey { key } => key.len(),
            ObjectData::BinaryFile { data } => data.len(),
            ObjectData::UserId { value, .. } => 4 + value.len(),
            ObjectData::P256Pair { .. } => 32 + 65,
            ObjectData::Ed25519Pair { .. } => 64,
        }
    }

    /// The origin the chip of format version 1 answered for these contents.
    fn version_1_origin(&self) -> u8 {
        match self {
            ObjectData::X25519Pair { .. } => ORIGIN_INTERNAL,
            _ => ORIGIN_EXTERNAL,
        }
    }
}

/// One secure object: contents, the policy it was created with, where its contents came from
/// and who created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureObject {
    pub data: ObjectData,
    /// The policy TLV value given at creation (validated then), if any.
    pub policy: Option<Vec<u8>>,
    /// `ORIGIN_INTERNAL` (generated inside the chip), `ORIGIN_EXTERNAL` (written with its
    /// contents from outside) or `ORIGIN_PROVISIONED` (NXP's, at manufacture).
    pub origin: u8,
    /// The authentication object of the session that created it (0: none).
    pub creator: u32,
}

impl SecureObject {
    /// An object written from outside without a session.
    pub fn external(data: ObjectData, policy: Option<Vec<u8>>) -> Self {
        SecureObject {
            data,
            policy,
            origin: ORIGIN_EXTERNAL,
            creator: 0,
        }
    }
}

/// Everything the chip keeps across resets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChipState {
    pub objects: BTreeMap<u32, SecureObject>,
    /// Weierstrass curves made with CreateECCurve: curve id -> the SetECCurveParam parameters
    /// given so far (a mask of `kSE05x_ECCurveParam_*`; all five: the curve is SET).
    pub curves: BTreeMap<u8, u8>,
}

impl ChipState {
    /// A chip as it leaves NXP: a random 18-byte unique id, the attestation key and its
    /// certificate, and a provisioned secret. The root that issued the certificate is dropped
    /// (see [`ChipState::fresh_with_root`]).
    pub fn fresh() -> Self {
        Self::fresh_with_root().0
    }

    /// A fresh chip and the PEM certificate of the test root of its attestation certificate.
    pub fn fresh_with_root() -> (Self, String) {
        let mut unique_id = [0u8; UNIQUE_ID_LEN];
        OsRng.fill_bytes(&mut unique_id);
        let mut secret = Zeroizing::new(vec![0u8; 16]);
        OsRng.fill_bytes(&mut secret);
        let mut objects = BTreeMap::new();
        let plain = |data| SecureObject {
            data,
            policy: None,
            origin: ORIGIN_PROVISIONED,
            creator: 0,
        };
        objects.insert(
            UNIQUE_ID,
            plain(ObjectData::BinaryFile {
                data: unique_id.to_vec(),
            }),
        );
        objects.insert(
            PROVISIONED_SECRET,
            plain(ObjectData::AesKey { key: secret }),
        );
        let mut state = ChipState {
            objects,
            curves: BTreeMap::new(),
        };
        let root_pem = state
            .provision_attestation()
            .expect("a fresh chip has no attestation key yet")
            .unwrap_or_else(|e| panic!("provisioning a virtual chip: {e}"));
        (state, root_pem)
    }

    /// Adds the attestation key and its certificate when the chip has none (a state of an
    /// earlier build): the root's PEM certificate, or `None` when there was nothing to do.
    pub fn provision_attestation(&mut self) -> Option<Result<String, String>> {
        if self.objects.contains_key(&ATTESTATION_KEY) {
            return None;
        }
        let unique_id = match self.objects.get(&UNIQUE_ID) {
            Some(SecureObject {
                data: ObjectData::BinaryFile { data },
                ..
            }) => data.clone(),
            _ => vec![0; UNIQUE_ID_LEN],
        };
        Some(
            crate::attestation::provision(&unique_id).map(|provisioned| {
                self.objects.insert(ATTESTATION_KEY, provisioned.key);
                self.objects
                    .insert(ATTESTATION_CERTIFICATE, provisioned.certificate);
                provisioned.root_pem
            }),
        )
    }

    /// NVM bytes in use.
    pub fn nvm_used(&self) -> usize {
        self.objects
            .values()
            .map(|o| OBJECT_OVERHEAD + o.data.size() + o.policy.as_ref().map_or(0, Vec::len))
            .sum()
    }

    /// Whether an object of `size` content bytes (with `policy_len` policy bytes) still fits.
    pub fn has_room_for(&self, size: usize, policy_len: usize) -> bool {
        self.objects.len() < MAX_OBJECTS
            && self.nvm_used() + OBJECT_OVERHEAD + size + policy_len <= NVM_CAPACITY
    }

    /// The file format above.
    pub fn serialize(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(64 + self.nvm_used()));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.objects.len() as u32).to_le_bytes());
        for (id, object) in &self.objects {
            out.extend_from_slice(&id.to_be_bytes());
            out.push(object.data.kind());
            let policy = object.policy.as_deref().unwrap_or(&[]);
            out.extend_from_slice(&(policy.len() as u16).to_le_bytes());
            out.extend_from_slice(policy);
            out.push(object.origin);
            out.extend_from_slice(&object.creator.to_be_bytes());
            let payload = object.data.payload();
            out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&payload);
        }
        out.push(self.curves.len() as u8);
        for (curve, params) in &self.curves {
            out.extend_from_slice(&[*curve, *params]);
        }
        let crc = CRC32.checksum(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads the file format; the error says what is wrong.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < MAGIC.len() + 2 + 4 + 4 {
            return Err(format!(
                "{} bytes is too short for a state file",
                bytes.len()
            ));
        }
        if &bytes[..8] != MAGIC {
            return Err("not a virtual SE050 state file (bad magic)".into());
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        if CRC32.checksum(body) != stored {
            return Err("checksum mismatch (truncated or corrupted)".into());
        }
        let mut reader = Reader { bytes: body, at: 8 };
        let version = u16::from_le_bytes(reader.array()?);
        if !(1..=FORMAT_VERSION).contains(&version) {
            return Err(format!(
                "format version {version}, this build reads 1 to {FORMAT_VERSION}"
            ));
        }
        let count = u32::from_le_bytes(reader.array()?);
        let mut objects = BTreeMap::new();
        for index in 0..count {
            let id = u32::from_be_bytes(reader.array()?);
            let [kind] = reader.array()?;
            let policy_len = u16::from_le_bytes(reader.array()?);
            let policy = reader.take(policy_len as usize)?;
            let origin_creator = if version >= 2 {
                let [origin] = reader.array()?;
                Some((origin, u32::from_be_bytes(reader.array()?)))
            } else {
                None
            };
            let payload_len = u32::from_le_bytes(reader.array()?);
            let payload = reader.take(payload_len as usize)?;
            let data = ObjectData::from_parts(kind, payload)
                .ok_or_else(|| format!("object {index} (0x{id:08X}): bad kind {kind} or size"))?;
            let policy = (!policy.is_empty()).then(|| policy.to_vec());
            let (origin, creator) = origin_creator.unwrap_or((data.version_1_origin(), 0));
            if !matches!(
                origin,
                ORIGIN_EXTERNAL | ORIGIN_INTERNAL | ORIGIN_PROVISIONED
            ) {
                return Err(format!("object 0x{id:08X}: bad origin {origin}"));
            }
            let object = SecureObject {
                data,
                policy,
                origin,
                creator,
            };
            if objects.insert(id, object).is_some() {
                return Err(format!("object 0x{id:08X} appears twice"));
            }
        }
        let mut curves = BTreeMap::new();
        if version >= 3 {
            let [count] = reader.array()?;
            for _ in 0..count {
                let [curve, params] = reader.array()?;
                if curves.insert(curve, params).is_some() {
                    return Err(format!("curve 0x{curve:02X} appears twice"));
                }
            }
        }
        if reader.at != body.len() {
            return Err(format!(
                "{} stray bytes after the objects",
                body.len() - reader.at
            ));
        }
        Ok(ChipState { objects, curves })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    /// The next `N` bytes, for a number or a one-byte field.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }
}
