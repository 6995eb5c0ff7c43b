//! The Noise_IKpsk2 handshake of WireGuard, split where the static key is used.
//!
//! Initiator: `create_initiation` (es with a fresh ephemeral, ss from the per-peer cache: no static
//! key), then `consume_response` (ee, and se: the ONE static-key DH of its handshake).
//! Responder: `consume_initiation` (es: the ONE static-key DH, done before the sender is known,
//! which is why it is separate), then `accept_initiation` (ss from the cache, timestamp) and
//! `create_response` (ee, se with our fresh ephemeral: no static key).
//! The MACs at the end of each message belong to `cookie.rs`; `peer.rs` adds and checks them.

use std::sync::Arc;

use parking_lot::RwLock;

use rand_core::OsRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::low_order::is_low_order;
use super::primitives::{aead_open, aead_seal, hash, kdf1, kdf2, kdf3, CONSTRUCTION, IDENTIFIER};
use super::{
    message_type, read_u32, HandshakeError, MessageType, Timestamp, INITIATION_LEN,
    MESSAGE_INITIATION, MESSAGE_RESPONSE, RESPONSE_LEN,
};
use crate::key::StaticKey;

// Offsets inside an initiation.
const INIT_SENDER: usize = 4;
const INIT_EPHEMERAL: usize = 8;
const INIT_STATIC: usize = 40;
const INIT_TIMESTAMP: usize = 88;
/// Where an initiation's mac1 starts (everything before it is covered by mac1).
pub const INIT_MAC1: usize = 116;
// Offsets inside a response.
const RESP_SENDER: usize = 4;
const RESP_RECEIVER: usize = 8;
const RESP_EPHEMERAL: usize = 12;
const RESP_EMPTY: usize = 44;
/// Where a response's mac1 starts.
pub const RESP_MAC1: usize = 60;

/// The interface's own static key and what is derived from its public half. The key can be
/// replaced while the device runs (key rotation, `device/key_switch.rs`): each handshake step
/// takes one consistent snapshot of key, public key and hash.
pub struct Identity {
    current: RwLock<Arc<IdentityKeys>>,
}

struct IdentityKeys {
    key: Arc<dyn StaticKey>,
    public: [u8; 32],
    /// HASH(HASH(CONSTRUCTION) || IDENTIFIER || our public): the responder's initial hash.
    responder_hash: [u8; 32],
}

impl IdentityKeys {
    fn of(key: Arc<dyn StaticKey>) -> IdentityKeys {
        let public = key.public_key();
        let responder_hash = hash(&[&initial_hash(), &public]);
        IdentityKeys {
            key,
            public,
            responder_hash,
        }
    }
}

impl Identity {
    /// The identity of `key` (asks it for its public key once).
    pub fn new(key: Arc<dyn StaticKey>) -> Identity {
        Identity {
            current: RwLock::new(Arc::new(IdentityKeys::of(key))),
        }
    }

    fn snapshot(&self) -> Arc<IdentityKeys> {
        self.current.read().clone()
    }

    /// Our static public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.current.read().public
    }

    /// The static key itself (the handshake worker computes per-peer `ss` with it).
    pub fn key(&self) -> Arc<dyn StaticKey> {
        self.current.read().key.clone()
    }

    /// Use `key` from now on. Handshakes under way with the old key fail from here (their
    /// messages no longer match); whoever replaces the key also drops per-peer state derived
    /// from the old one (the cached static-static DH, pending initiations).
    pub fn replace(&self, key: Arc<dyn StaticKey>) {
        let keys = Arc::new(IdentityKeys::of(key));
        *self.current.write() = keys;
    }
}

fn initial_chaining_key() -> [u8; 32] {
    hash(&[CONSTRUCTION])
}

fn initial_hash() -> [u8; 32] {
    hash(&[&initial_chaining_key(), IDENTIFIER])
}

/// DH with an ephemeral secret, refusing an all-zero (non-contributory) result.
fn ephemeral_dh(
    secret: &StaticSecret,
    public: &[u8; 32],
) -> Result<Zeroizing<[u8; 32]>, HandshakeError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(HandshakeError::LowOrderPoint);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

fn array32(bytes: &[u8]) -> [u8; 32] {
    bytes.try_into().expect("32-byte field")
}

/// The keys of one session, as both ends derive them at the end of a handshake.
pub struct SessionKeys {
    pub local_index: u32,
    pub remote_index: u32,
    pub send: Zeroizing<[u8; 32]>,
    pub receive: Zeroizing<[u8; 32]>,
    pub is_initiator: bool,
}

/// What the initiator remembers between sending an initiation and receiving the response.
pub struct InitiatorPending {
    pub local_index: u32,
    ephemeral: StaticSecret,
    hash: [u8; 32],
    chaining_key: Zeroizing<[u8; 32]>,
}

/// Build an initiation to `remote_public` into `out[..INIT_MAC1]` (the MACs are added later).
/// `ss` is DH(our static, their static), cached per peer: no static-key operation happens here.
pub fn create_initiation(
    local_public: &[u8; 32],
    remote_public: &[u8; 32],
    ss: &[u8; 32],
    local_index: u32,
    timestamp: Timestamp,
    out: &mut [u8; INITIATION_LEN],
) -> Result<InitiatorPending, HandshakeError> {
    let ephemeral = StaticSecret::random_from_rng(OsRng);
    let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
    let mut h = hash(&[&initial_hash(), remote_public]);

    out.fill(0);
    out[0] = MESSAGE_INITIATION;
    out[INIT_SENDER..INIT_SENDER + 4].copy_from_slice(&local_index.to_le_bytes());
    out[INIT_EPHEMERAL..INIT_STATIC].copy_from_slice(&ephemeral_public);

    let ck = kdf1(&initial_chaining_key(), &ephemeral_public);
    h = hash(&[&h, &ephemeral_public]);
    let es = ephemeral_dh(&ephemeral, remote_public)?;
    let (ck, k) = kdf2(&ck, &*es);
    aead_seal(&k, local_public, &h, &mut out[INIT_STATIC..INIT_TIMESTAMP]);
    h = hash(&[&h, &out[INIT_STATIC..INIT_TIMESTAMP]]);
    let (ck, k) = kdf2(&ck, ss);
    aead_seal(&k, &timestamp.0, &h, &mut out[INIT_TIMESTAMP..INIT_MAC1]);
    h = hash(&[&h, &out[INIT_TIMESTAMP..INIT_MAC1]]);

    Ok(InitiatorPending {
        local_index,
        ephemeral,
        hash: h,
        chaining_key: ck,
    })
}

/// An initiation whose sender is known (its static key decrypted) but not yet authenticated: the
/// timestamp still has to be checked with the per-peer `ss`.
pub struct ReceivedInitiation {
    initiator_public: [u8; 32],
    initiator_ephemeral: [u8; 32],
    sender_index: u32,
    hash: [u8; 32],
    chaining_key: Zeroizing<[u8; 32]>,
    encrypted_timestamp: [u8; 28],
}

impl ReceivedInitiation {
    /// The static public key the initiation claims: look the peer up with it.
    pub fn initiator_public(&self) -> [u8; 32] {
        self.initiator_public
    }

    /// The initiator's sender index (our receiver index for the response).
    pub fn sender_index(&self) -> u32 {
        self.sender_index
    }
}

/// The initiator's ephemeral public key in an initiation (unauthenticated: what the responder's
/// token DH would use), for the checks that avoid that DH.
pub fn initiation_ephemeral(msg: &[u8; INITIATION_LEN]) -> [u8; 32] {
    array32(&msg[INIT_EPHEMERAL..INIT_STATIC])
}

/// Responder, step 1: decrypt who sent this initiation. Performs the ONE static-key DH of the
/// responder's handshake (es), so it runs on the handshake worker, after mac1 (and under load
/// mac2) were checked on the packet path.
pub fn consume_initiation(id: &Identity, msg: &[u8]) -> Result<ReceivedInitiation, HandshakeError> {
    if message_type(msg) != Some(MessageType::Initiation) {
        return Err(HandshakeError::Malformed("not a 148-byte initiation"));
    }
    let initiator_ephemeral = array32(&msg[INIT_EPHEMERAL..INIT_STATIC]);
    // Checked before the token is asked: a small-order ephemeral would only give an all-zero
    // secret after the chip spent an ECDH on it.
    if is_low_order(&initiator_ephemeral) {
        return Err(HandshakeError::LowOrderPoint);
    }
    let ck = kdf1(&initial_chaining_key(), &initiator_ephemeral);
    let id = id.snapshot();
    let h = hash(&[&id.responder_hash, &initiator_ephemeral]);
    let es = id.key.diffie_hellman(&initiator_ephemeral)?;
    let (ck, k) = kdf2(&ck, &*es);
    let mut initiator_public = [0u8; 32];
    aead_open(
        &k,
        &msg[INIT_STATIC..INIT_TIMESTAMP],
        &h,
        &mut initiator_public,
    )
    .map_err(|_| HandshakeError::Decrypt("initiation static key"))?;
    let h = hash(&[&h, &msg[INIT_STATIC..INIT_TIMESTAMP]]);
    Ok(ReceivedInitiation {
        initiator_public,
        initiator_ephemeral,
        sender_index: read_u32(msg, INIT_SENDER),
        hash: h,
        chaining_key: ck,
        encrypted_timestamp: msg[INIT_TIMESTAMP..INIT_MAC1].try_into().expect("28 bytes"),
    })
}

/// What the responder keeps between accepting an initiation and sending its response.
pub struct ResponderState {
    remote_index: u32,
    remote_ephemeral: [u8; 32],
    hash: [u8; 32],
    chaining_key: Zeroizing<[u8; 32]>,
}

/// Responder, step 2: with the per-peer cached `ss`, authenticate the initiation and return its
/// timestamp (the caller checks it is newer than the last one accepted).
pub fn accept_initiation(
    received: ReceivedInitiation,
    ss: &[u8; 32],
) -> Result<(Timestamp, ResponderState), HandshakeError> {
    let (ck, k) = kdf2(&received.chaining_key, ss);
    let mut timestamp = [0u8; 12];
    aead_open(
        &k,
        &received.encrypted_timestamp,
        &received.hash,
        &mut timestamp,
    )
    .map_err(|_| HandshakeError::Decrypt("initiation timestamp"))?;
    let h = hash(&[&received.hash, &received.encrypted_timestamp]);
    Ok((
        Timestamp(timestamp),
        ResponderState {
            remote_index: received.sender_index,
            remote_ephemeral: received.initiator_ephemeral,
            hash: h,
            chaining_key: ck,
        },
    ))
}

/// Responder, step 3: the response into `out[..RESP_MAC1]` and the session keys. No static key.
pub fn create_response(
    state: ResponderState,
    remote_public: &[u8; 32],
    psk: &[u8; 32],
    local_index: u32,
    out: &mut [u8; RESPONSE_LEN],
) -> Result<SessionKeys, HandshakeError> {
    let ephemeral = StaticSecret::random_from_rng(OsRng);
    let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
    out.fill(0);
    out[0] = MESSAGE_RESPONSE;
    out[RESP_SENDER..RESP_SENDER + 4].copy_from_slice(&local_index.to_le_bytes());
    out[RESP_RECEIVER..RESP_RECEIVER + 4].copy_from_slice(&state.remote_index.to_le_bytes());
    out[RESP_EPHEMERAL..RESP_EMPTY].copy_from_slice(&ephemeral_public);

    let ck = kdf1(&state.chaining_key, &ephemeral_public);
    let h = hash(&[&state.hash, &ephemeral_public]);
    let ee = ephemeral_dh(&ephemeral, &state.remote_ephemeral)?;
    let ck = kdf1(&ck, &*ee);
    let se = ephemeral_dh(&ephemeral, remote_public)?;
    let ck = kdf1(&ck, &*se);
    let (ck, t, k) = kdf3(&ck, psk);
    let h = hash(&[&h, &*t]);
    aead_seal(&k, &[], &h, &mut out[RESP_EMPTY..RESP_MAC1]);

    let (initiator_send, responder_send) = kdf2(&ck, &[]);
    Ok(SessionKeys {
        local_index,
        remote_index: state.remote_index,
        send: responder_send,
        receive: initiator_send,
        is_initiator: false,
    })
}

/// Initiator: consume the response to `pending`. Performs the ONE static-key DH of the
/// initiator's handshake (se), so it runs on the handshake worker.
pub fn consume_response(
    id: &Identity,
    pending: &InitiatorPending,
    psk: &[u8; 32],
    msg: &[u8],
) -> Result<SessionKeys, HandshakeError> {
    if message_type(msg) != Some(MessageType::Response) {
        return Err(HandshakeError::Malformed("not a 92-byte response"));
    }
    if read_u32(msg, RESP_RECEIVER) != pending.local_index {
        return Err(HandshakeError::NoPendingHandshake);
    }
    let responder_ephemeral = array32(&msg[RESP_EPHEMERAL..RESP_EMPTY]);
    let ck = kdf1(&pending.chaining_key, &responder_ephemeral);
    let h = hash(&[&pending.hash, &responder_ephemeral]);
    let ee = ephemeral_dh(&pending.ephemeral, &responder_ephemeral)?;
    let ck = kdf1(&ck, &*ee);
    let se = id.key().diffie_hellman(&responder_ephemeral)?;
    let ck = kdf1(&ck, &*se);
    let (ck, t, k) = kdf3(&ck, psk);
    let h = hash(&[&h, &*t]);
    aead_open(&k, &msg[RESP_EMPTY..RESP_MAC1], &h, &mut [])
        .map_err(|_| HandshakeError::Decrypt("response"))?;

    let (initiator_send, responder_send) = kdf2(&ck, &[]);
    Ok(SessionKeys {
        local_index: pending.local_index,
        remote_index: read_u32(msg, RESP_SENDER),
        send: initiator_send,
        receive: responder_send,
        is_initiator: true,
    })
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
