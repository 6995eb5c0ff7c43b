//! The virtual chip's IoT applet: interprets command APDUs as an SE050C/E would, with its
//! status words, on top of the persistent [`Store`] and the operation [`counters`](super::counters).
//!
//! Fidelity notes (where the real applet's behaviour is not public, the choice made here):
//! - a missing object answers 6A80; reading a private key or secret answers 6985; creating or
//!   deleting in a reserved range answers 6985; no room answers 6A84;
//! - a policy (tag 0x11) is honoured for the caller: the session's authentication object inside
//!   a verified session (its entry, else the entry for 0), auth object 0 outside any; an
//!   operation the entry does not allow answers 6986; no entry at all allows nothing;
//! - UserIDs, sessions and session-wrapped commands: see `auth.rs`;
//! - commands before SELECT answer 6D00 (the card manager does not know them), CLA 0x84
//!   (SCP03-wrapped) answers 6982, INS flags other than transient writes (auth objects but
//!   WriteUserID, attest) answer 6D00; transient objects: see `transient.rs`;
//! - ReadIDList pages hold [`LIST_PAGE`] ids; a response longer than `Le` or than the 889-byte
//!   payload answers 6700.

use crate::counters::{Counter, CounterStore, Counters};
use crate::protocol::*;
use crate::store::{ChipState, ObjectData, SecureObject, Store, StoreError};
use crate::wipe::SecretBytes;
use crate::wire::apdu::{self, CommandApdu, StatusWord};
use crate::wire::tlv::{self, Tlvs};
use crate::x25519::{chip_order_pair, rfc_order};
use crate::{ApduHandler, Processed};
use rand_core::{OsRng, RngCore};
use std::path::Path;
use std::time::Duration;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// What the virtual chip answers to SELECT: IoT applet 3.1.0 with the feature bits of a full
/// SE050C (ECDAA, ECDSA/ECDH, EdDSA, DH_MONT, HMAC, RSA, AES, DES, PBKDF, TLS, MIFARE, I2CM).
pub const VIRTUAL_VERSION: AppletVersion = AppletVersion {
    major: 3,
    minor: 1,
    patch: 0,
    config: 0x3FFF,
    securebox_major: 1,
    securebox_minor: 11,
};

/// An SE050E's applet as NXP's logged SELECT answers it (07 02 00 3F 9F FF FF): 7.2.0, the
/// layouts of applet 7.2 (ReadObjectAttributes' TAG_3, the 7.x attested read).
pub const VIRTUAL_VERSION_7_2: AppletVersion = AppletVersion {
    major: 7,
    minor: 2,
    patch: 0,
    config: 0x3F9F,
    securebox_major: 0xFF,
    securebox_minor: 0xFF,
};

/// The applet version a file-backed chip answers: `SE050_SIM_APPLET_VERSION` = `3.1` (the
/// default) or `7.2`; anything else is refused rather than quietly replaced.
fn version_from_environment() -> std::io::Result<AppletVersion> {
    match std::env::var("SE050_SIM_APPLET_VERSION") {
        Err(std::env::VarError::NotPresent) => Ok(VIRTUAL_VERSION),
        Ok(value) => version_named(&value),
        Err(e) => Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)),
    }
}

/// The applet version `3.1` or `7.2`.
fn version_named(name: &str) -> std::io::Result<AppletVersion> {
    match name {
        "3.1" => Ok(VIRTUAL_VERSION),
        "7.2" => Ok(VIRTUAL_VERSION_7_2),
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("SE050_SIM_APPLET_VERSION {other:?}: this chip knows 3.1 and 7.2"),
        )),
    }
}

/// Ids per ReadIDList answer.
pub const LIST_PAGE: usize = 32;

type Answer = Result<Reply, StatusWord>;

/// A successful answer: response data (wiped when dropped: it may be a shared secret), what to
/// count, how long the chip is busy.
struct Reply {
    data: SecretBytes,
    counter: Option<Counter>,
    busy: Duration,
}

impl Reply {
    fn data(data: Vec<u8>) -> Self {
        Reply {
            data: data.into(),
            counter: None,
            busy: Duration::ZERO,
        }
    }

    fn counted(mut self, counter: Counter) -> Self {
        self.counter = Some(counter);
        self
    }
}

fn tag1(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tlv::encoded_len(value.len()));
    tlv::push(&mut out, TAG_1, value);
    out
}

mod attest;

mod attributes;

mod auth;

/// ReadECCurveList, CreateECCurve, SetECCurveParam, GetECCurveId.
mod curves;
mod ec;

mod management;
use management::timestamp_now;

/// ReadObject, ReadSize, ReadIDList, ReadType.
mod read;

mod transient;

mod write;

/// The IoT applet of a virtual SE050.
pub struct VirtualApplet {
    store: Store,
    counters: CounterStore,
    selected: bool,
    latency: Duration,
    /// Open applet sessions (chip RAM: gone at a reset).
    sessions: auth::Sessions,
    /// The authentication object the current command runs as (0: no session).
    auth: u32,
    /// Power cycles announced for this chip's state file (power.rs).
    power: Option<crate::power::PowerWatch>,
    /// Transient objects (transient.rs), with the session that created each (None: none).
    transient: std::collections::HashMap<u32, Option<[u8; 8]>>,
    /// The session the current command runs in (a ProcessSessionCmd), if any.
    session: Option<[u8; 8]>,
    /// The current write creates a transient object.
    creating_transient: bool,
    /// The applet version this chip answers, and whose layouts it follows.
    version: AppletVersion,
}

impl VirtualApplet {
    /// A chip whose state persists in `state` (created fresh when missing), shared with every
    /// process that opens the same file. Keygen and ECDH keep the chip busy for
    /// `per_operation_latency`.
    pub fn open(state: &Path, per_operation_latency: Duration) -> Result<Self, StoreError> {
        let store = Store::open(state)?;
        let counters = CounterStore::open(state).map_err(|source| StoreError::Io {
            path: crate::store::counters_path(state),
            action: "open the operation counters",
            source,
        })?;
        Ok(VirtualApplet {
            store,
            counters,
            selected: false,
            latency: per_operation_latency,
            sessions: Default::default(),
            auth: 0,
            power: Some(crate::power::PowerWatch::new(state)),
            transient: Default::default(),
            session: None,
            creating_transient: false,
            version: version_from_environment().map_err(|source| StoreError::Io {
                path: state.to_path_buf(),
                action: "choose the applet version (SE050_SIM_APPLET_VERSION)",
                source,
            })?,
        })
    }

    /// A fresh chip living only in this process.
    pub fn in_memory() -> Self {
        VirtualApplet {
            store: Store::in_memory(),
            counters: CounterStore::in_memory(),
            selected: false,
            latency: Duration::ZERO,
            sessions: Default::default(),
            auth: 0,
            power: None,
            transient: Default::default(),
            session: None,
            creating_transient: false,
            version: VIRTUAL_VERSION,
        }
    }

    /// Makes the chip answer (and follow the layouts of) applet `version`: [`VIRTUAL_VERSION`]
    /// (3.1, the default) or [`VIRTUAL_VERSION_7_2`].
    pub fn set_version(&mut self, version: AppletVersion) {
        self.version = version;
    }

    pub fn version(&self) -> AppletVersion {
        self.version
    }

    /// Whether this chip follows applet 7.2's layouts (NXP's `SSS_HAVE_SE05X_VER_GTE_07_02`).
    fn is_7_2(&self) -> bool {
        (self.version.major, self.version.minor) >= (7, 2)
    }

    /// The PEM certificate of the test root that issued this chip's attestation certificate.
    pub fn attestation_root_pem(&self) -> Option<String> {
        self.store.attestation_root_pem()
    }

    /// Sets the time keygen and ECDH keep the chip busy.
    pub fn set_latency(&mut self, per_operation_latency: Duration) {
        self.latency = per_operation_latency;
    }

    /// The operation counters (cumulative across processes for a file-backed chip).
    pub fn counters(&self) -> Counters {
        self.counters.snapshot()
    }

    /// The chip's current state (as of the last command).
    pub fn state(&self) -> &ChipState {
        self.store.state()
    }

    fn answer(&mut self, command: &[u8]) -> Answer {
        let apdu = CommandApdu::parse(command).map_err(|_| StatusWord::WRONG_LENGTH)?;
        if apdu.data.len() > MAX_APDU_PAYLOAD {
            return Err(StatusWord::WRONG_LENGTH);
        }
        if let Err(e) = self
            .store
            .refresh()
            .and_then(|()| self.store.ensure_attestation())
        {
            log::error!("virtual SE050: {e}");
            return Err(StatusWord::NO_PRECISE_DIAGNOSIS);
        }
        if self.power.as_mut().is_some_and(|p| p.cycled()) {
            log::info!("virtual SE050: power cycle: sessions and selection lost");
            self.reset();
        }
        let reply = match apdu.cla {
            CLA_ISO if apdu.ins == INS_SELECT => self.select(&apdu),
            CLA_ISO => Err(StatusWord::INS_NOT_SUPPORTED),
            CLA_IOT if !self.selected => Err(StatusWord::INS_NOT_SUPPORTED),
            CLA_IOT => self.applet_command(&apdu),
            CLA_SECURE => Err(StatusWord::SECURITY_STATUS),
            _ => Err(StatusWord::CLA_NOT_SUPPORTED),
        }?;
        if reply.data.len() > MAX_APDU_PAYLOAD || apdu.le.is_some_and(|ne| reply.data.len() > ne) {
            return Err(StatusWord::WRONG_LENGTH);
        }
        Ok(reply)
    }

    fn select(&mut self, apdu: &CommandApdu) -> Answer {
        if (apdu.p1, apdu.p2) != (0x04, 0x00) {
            return Err(StatusWord::WRONG_P1P2);
        }
        if apdu.data != IOT_APPLET_AID {
            self.selected = false;
            return Err(StatusWord::NOT_FOUND);
        }
        self.selected = true;
        Ok(Reply::data(self.version.to_bytes().to_vec()))
    }

    fn applet_command(&mut self, apdu: &CommandApdu) -> Answer {
        if apdu.ins == INS_WRITE | INS_FLAG_TRANSIENT {
            return self.write_transient(apdu);
        }
        let tlvs = Tlvs::parse(&apdu.data).map_err(|_| StatusWord::WRONG_DATA)?;
        match (apdu.ins, apdu.p1, apdu.p2) {
            (INS_WRITE, p1, P2_DEFAULT) if p1 & P1_EC == P1_EC && p1 & P1_KEY_TYPE_MASK != 0 => {
                self.write_ec_key(p1, &tlvs)
            }
            (INS_WRITE, P1_AES, P2_DEFAULT) => self.write_aes_key(&tlvs),
            (INS_WRITE, P1_BINARY, P2_DEFAULT) => self.write_binary(&tlvs),
            (INS_WRITE, P1_CURVE, P2_CREATE) => self.create_curve(&tlvs),
            (INS_WRITE, P1_CURVE, P2_PARAM) => self.set_curve_param(&tlvs),
            (INS_WRITE, _, _) => Err(StatusWord::WRONG_P1P2),
            (ins, P1_USERID, P2_DEFAULT) if ins == INS_WRITE | INS_FLAG_AUTH_OBJECT => {
                self.write_user_id(&tlvs)
            }
            (INS_MGMT, P1_DEFAULT, P2_SESSION_CREATE) if self.auth == 0 => {
                self.create_session(&tlvs)
            }
            (INS_PROCESS, P1_DEFAULT, P2_DEFAULT) if self.auth == 0 => self.process_session(&tlvs),
            // VerifySessionUserID and CloseSession only make sense inside a session.
            (INS_MGMT, P1_DEFAULT, P2_SESSION_USERID | P2_SESSION_CLOSE) => {
                Err(StatusWord::CONDITIONS_NOT_SATISFIED)
            }
            (INS_READ, P1_DEFAULT, P2_DEFAULT) => self.read_object(&tlvs),
            (ins, P1_DEFAULT, P2_DEFAULT | P2_ATTRIBUTES) if ins == INS_READ | INS_FLAG_ATTEST => {
                self.read_attested(apdu, &tlvs)
            }
            (INS_READ, P1_DEFAULT, P2_SIZE) => self.read_size(&tlvs),
            (INS_READ, P1_DEFAULT, P2_LIST) => self.read_id_list(&tlvs),
            (INS_READ, P1_DEFAULT, P2_TYPE) => self.read_type(&tlvs),
            (INS_READ, P1_DEFAULT, P2_ATTRIBUTES) => self.read_attributes(&tlvs),
            (INS_READ, P1_CURVE, P2_LIST) => self.read_curve_list(),
            (INS_READ, P1_CURVE, P2_ID) => self.curve_id(&tlvs),
            (INS_READ, _, _) => Err(StatusWord::WRONG_P1P2),
            (INS_CRYPTO, P1_EC, P2_DH) => self.ecdh(&tlvs),
            (INS_CRYPTO, P1_SIGNATURE, P2_SIGN) => self.sign(&tlvs),
            (INS_CRYPTO, _, _) => Err(StatusWord::WRONG_P1P2),
            (INS_MGMT, P1_DEFAULT, P2_VERSION) => Ok(Reply::data(tag1(&self.version.to_bytes()))),
            (INS_MGMT, P1_DEFAULT, P2_EXIST) => self.exists(&tlvs),
            (INS_MGMT, P1_DEFAULT, P2_DELETE_OBJECT) => self.delete(&tlvs),
            (INS_MGMT, P1_DEFAULT, P2_RANDOM) => self.random(&tlvs),
            (INS_MGMT, P1_DEFAULT, P2_MEMORY) => self.free_memory(&tlvs),
            (INS_MGMT, P1_DEFAULT, P2_TIME) => self.timestamp(),
            (INS_MGMT, P1_DEFAULT, P2_DELETE_ALL) => self.delete_all(),
            (INS_MGMT, _, _) => Err(StatusWord::WRONG_P1P2),
            // Unknown instructions, and the transient/auth/attest flag variants.
            _ => Err(StatusWord::INS_NOT_SUPPORTED),
        }
    }

    fn object(&self, id: u32) -> Result<&SecureObject, StatusWord> {
        self.store
            .state()
            .objects
            .get(&id)
            .ok_or(StatusWord::WRONG_DATA)
    }

    /// Saves `next` as the chip's state; the command fails (nothing changed) if it cannot.
    fn commit(&mut self, next: ChipState) -> Result<(), StatusWord> {
        if self.creating_transient {
            let created: Vec<u32> = next
                .objects
                .keys()
                .filter(|id| !self.store.state().objects.contains_key(id))
                .copied()
                .collect();
            for id in created {
                self.store.make_volatile(id);
            }
        }
        self.store.commit(next).map_err(|e| {
            log::error!("virtual SE050: {e}");
            StatusWord::NO_PRECISE_DIAGNOSIS
        })
    }

    fn ecdh(&mut self, tlvs: &Tlvs) -> Answer {
        let object = self.object(object_id(tlvs)?)?;
        let peer = tlvs.require(TAG_2).map_err(|_| StatusWord::WRONG_DATA)?;
        if let ObjectData::P256Pair { .. } = object.data {
            return self.ecdh_p256(object, peer);
        }
        let private = match &object.data {
            ObjectData::X25519Pair { private, .. } | ObjectData::X25519Private { private } => {
                private
            }
            _ => return Err(StatusWord::CONDITIONS_NOT_SATISFIED),
        };
        if !allows(self.auth, object, POLICY_ALLOW_KA) {
            return Err(StatusWord::NOT_ALLOWED_BY_POLICY);
        }
        let secret = StaticSecret::from(*rfc_order(private.as_slice())?);
        let peer = PublicKey::from(*rfc_order(peer)?);
        // Like the chip, a low-order peer point is not refused here: the secret is then zero,
        // and the PKCS#11 layer refuses it.
        let shared = secret.diffie_hellman(&peer);
        let chip_order = crate::x25519::to_chip_order(shared.as_bytes());
        Ok(Reply {
            // tag1 allocates exactly the TLV's size: no unwiped copy is left by its growth.
            data: SecretBytes::new(tag1(chip_order.as_slice())),
            counter: Some(Counter::Ecdh),
            busy: self.latency,
        })
    }

    fn exists(&mut self, tlvs: &Tlvs) -> Answer {
        let id = object_id(tlvs)?;
        let found = self.store.state().objects.contains_key(&id);
        Ok(Reply::data(tag1(&[if found {
            RESULT_SUCCESS
        } else {
            RESULT_FAILURE
        }])))
    }

    fn delete(&mut self, tlvs: &Tlvs) -> Answer {
        let id = object_id(tlvs)?;
        let object = self.object(id)?;
        if is_reserved(id) {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        if !allows(self.auth, object, POLICY_ALLOW_DELETE) {
            return Err(StatusWord::NOT_ALLOWED_BY_POLICY);
        }
        let mut next = self.store.state().clone();
        next.objects.remove(&id);
        self.commit(next)?;
        Ok(Reply::data(Vec::new()).counted(Counter::Deletes))
    }

    fn random(&mut self, tlvs: &Tlvs) -> Answer {
        let len = tlvs
            .require_u16(TAG_1)
            .map_err(|_| StatusWord::WRONG_DATA)? as usize;
        if len == 0 {
            return Err(StatusWord::WRONG_DATA);
        }
        if tlv::encoded_len(len) > MAX_APDU_PAYLOAD {
            return Err(StatusWord::WRONG_LENGTH);
        }
        let mut bytes = vec![0u8; len];
        OsRng.fill_bytes(&mut bytes);
        Ok(Reply::data(tag1(&bytes)).counted(Counter::Random))
    }
}

impl ApduHandler for VirtualApplet {
    fn process(&mut self, command: &[u8]) -> Processed {
        let answer = self.answer(command);
        let counter = answer.as_ref().ok().and_then(|reply| reply.counter);
        self.counters.count_apdu(counter);
        let (response, busy) = match answer {
            Ok(reply) => (apdu::response(&reply.data, StatusWord::OK), reply.busy),
            Err(sw) => (apdu::response(&[], sw), Duration::ZERO),
        };
        Processed { response, busy }
    }

    fn reset(&mut self) {
        self.selected = false;
        // Sessions and transient objects live in the chip's RAM.
        self.sessions.clear();
        self.drop_transient(|_| true);
    }
}

fn object_id(tlvs: &Tlvs) -> Result<u32, StatusWord> {
    let id = tlvs
        .require_u32(TAG_1)
        .map_err(|_| StatusWord::WRONG_DATA)?;
    if id == 0 {
        return Err(StatusWord::WRONG_DATA);
    }
    Ok(id)
}

/// The id of an object to create or write: not in a reserved range.
fn new_object_id(tlvs: &Tlvs) -> Result<u32, StatusWord> {
    let id = object_id(tlvs)?;
    // The factory-reset credential is the one reserved id a user may create (a UserID).
    if id == FACTORY_RESET_ID || !is_reserved(id) {
        Ok(id)
    } else {
        Err(StatusWord::CONDITIONS_NOT_SATISFIED)
    }
}

fn optional_u16(tlvs: &Tlvs, tag: u8) -> Result<Option<usize>, StatusWord> {
    match tlvs.get(tag) {
        Some(_) => Ok(Some(
            tlvs.require_u16(tag).map_err(|_| StatusWord::WRONG_DATA)? as usize,
        )),
        None => Ok(None),
    }
}

/// The policy TLV, validated.
fn policy_of(tlvs: &Tlvs) -> Result<Option<Vec<u8>>, StatusWord> {
    match tlvs.get(TAG_POLICY) {
        Some(bytes) => match decode_policy(bytes) {
            Some(_) => Ok(Some(bytes.to_vec())),
            None => Err(StatusWord::WRONG_DATA),
        },
        None => Ok(None),
    }
}

/// Whether the object's policy lets `auth` (the session's authentication object, 0 without a
/// session) do `access`: its own entry decides, else the entry for 0 ("everyone else").
fn allows(auth: u32, object: &SecureObject, access: u32) -> bool {
    let Some(bytes) = &object.policy else {
        return true;
    };
    let entries = decode_policy(bytes).unwrap_or_default();
    entries
        .iter()
        .find(|entry| entry.auth_object == auth && auth != 0)
        .or_else(|| entries.iter().find(|entry| entry.auth_object == 0))
        .is_some_and(|entry| entry.access & access == access)
}

/// What ReadSize answers: for EC keys the size of the curve (NXP's Se05x_API_ReadSize
/// documentation): 32 bytes for X25519, P-256 and Ed25519, not the bytes the key takes.
fn size_of(data: &ObjectData) -> u16 {
    match data {
        ObjectData::X25519Pair { .. }
        | ObjectData::X25519Private { .. }
        | ObjectData::P256Pair { .. }
        | ObjectData::Ed25519Pair { .. } => 32,
        data => data.size() as u16,
    }
}

/// The object's type code (`SE05x_SecObjTyp_t`).
fn object_type(object: &SecureObject) -> u8 {
    match object.data {
        ObjectData::X25519Pair { .. }
        | ObjectData::P256Pair { .. }
        | ObjectData::Ed25519Pair { .. } => TYPE_EC_KEY_PAIR,
        ObjectData::X25519Private { .. } => TYPE_EC_PRIVATE_KEY,
        ObjectData::AesKey { .. } => TYPE_AES_KEY,
        ObjectData::BinaryFile { .. } => TYPE_BINARY_FILE,
        ObjectData::UserId { .. } => TYPE_USERID,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod outside;

#[cfg(test)]
mod ec_tests;

#[cfg(test)]
mod attest_tests;
#[cfg(test)]
mod curves_tests;
#[cfg(test)]
mod test_support;
