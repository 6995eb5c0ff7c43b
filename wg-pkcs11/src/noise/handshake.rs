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
mod tests {
    use super::*;
    use crate::key::SoftKey;

    /// An initiator and a responder with software keys, and an initiation from one to the
    /// other sent with `sender_index`.
    struct Initiated {
        ipub: [u8; 32],
        ss_i: [u8; 32],
        iid: Identity,
        rid: Identity,
        init: [u8; INITIATION_LEN],
        pending: InitiatorPending,
    }

    fn initiated(sender_index: u32) -> Initiated {
        let (i, r) = (SoftKey::generate(), SoftKey::generate());
        let (ipub, rpub) = (i.public_key(), r.public_key());
        let ss_i = *i.diffie_hellman(&rpub).unwrap();
        let mut init = [0u8; INITIATION_LEN];
        let pending = create_initiation(
            &ipub,
            &rpub,
            &ss_i,
            sender_index,
            Timestamp::now(),
            &mut init,
        )
        .unwrap();
        Initiated {
            ipub,
            ss_i,
            iid: Identity::new(Arc::new(i)),
            rid: Identity::new(Arc::new(r)),
            init,
            pending,
        }
    }

    #[test]
    fn both_roles_derive_matching_keys() {
        let Initiated {
            ipub,
            ss_i,
            iid,
            rid,
            init,
            pending,
        } = initiated(11);
        let psk = [5u8; 32];

        let received = consume_initiation(&rid, &init).unwrap();
        assert_eq!(received.initiator_public(), ipub);
        assert_eq!(received.sender_index(), 11);
        let (_ts, state) = accept_initiation(received, &ss_i).unwrap();
        let mut resp = [0u8; RESPONSE_LEN];
        let rkeys = create_response(state, &ipub, &psk, 22, &mut resp).unwrap();
        let ikeys = consume_response(&iid, &pending, &psk, &resp).unwrap();
        assert_eq!(*ikeys.send, *rkeys.receive);
        assert_eq!(*ikeys.receive, *rkeys.send);
        assert_eq!((ikeys.local_index, ikeys.remote_index), (11, 22));
        assert_eq!((rkeys.local_index, rkeys.remote_index), (22, 11));
    }

    #[test]
    fn wrong_psk_or_ss_is_refused() {
        let Initiated {
            ipub,
            ss_i,
            iid,
            rid,
            init,
            pending,
        } = initiated(1);
        let received = consume_initiation(&rid, &init).unwrap();
        assert_eq!(
            accept_initiation(received, &[9u8; 32]).err(),
            Some(HandshakeError::Decrypt("initiation timestamp"))
        );
        let received = consume_initiation(&rid, &init).unwrap();
        let (_, state) = accept_initiation(received, &ss_i).unwrap();
        let mut resp = [0u8; RESPONSE_LEN];
        create_response(state, &ipub, &[1u8; 32], 2, &mut resp).unwrap();
        assert_eq!(
            consume_response(&iid, &pending, &[2u8; 32], &resp).err(),
            Some(HandshakeError::Decrypt("response"))
        );
    }

    #[test]
    fn tampered_initiation_and_low_order_ephemeral_are_refused() {
        let Initiated { rid, init, .. } = initiated(1);
        let mut bad = init;
        bad[INIT_STATIC + 3] ^= 0x80;
        assert_eq!(
            consume_initiation(&rid, &bad).err(),
            Some(HandshakeError::Decrypt("initiation static key"))
        );
        let mut low = init;
        low[INIT_EPHEMERAL..INIT_STATIC].fill(0);
        assert_eq!(
            consume_initiation(&rid, &low).err(),
            Some(HandshakeError::LowOrderPoint)
        );
        assert!(matches!(
            consume_initiation(&rid, &init[..100]).err(),
            Some(HandshakeError::Malformed(_))
        ));
    }

    /// A key that refuses to work: any call to it is a token operation the code should have
    /// avoided.
    struct NoTokenCalls([u8; 32]);

    impl StaticKey for NoTokenCalls {
        fn public_key(&self) -> [u8; 32] {
            self.0
        }
        fn diffie_hellman(
            &self,
            _: &[u8; 32],
        ) -> Result<Zeroizing<[u8; 32]>, crate::key::KeyError> {
            panic!("a token operation for a message a software check should have refused");
        }
    }

    #[test]
    fn a_low_order_ephemeral_costs_no_token_operation() {
        let Initiated { rid, init, .. } = initiated(1);
        let id = Identity::new(Arc::new(NoTokenCalls(rid.public_key())));
        // The seven small-order encodings (and their top-bit aliases) all stop before the DH.
        let seven = [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ];
        for hex in seven {
            for top in [0u8, 0x80] {
                let mut low = init;
                for (i, b) in low[INIT_EPHEMERAL..INIT_STATIC].iter_mut().enumerate() {
                    *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
                }
                low[INIT_STATIC - 1] |= top;
                assert_eq!(
                    consume_initiation(&id, &low).err(),
                    Some(HandshakeError::LowOrderPoint),
                    "{hex} top bit {top:#x}"
                );
            }
        }
    }

    /// Known answer: C_i = HASH(CONSTRUCTION) and H_i = HASH(C_i || IDENTIFIER), as boringtun
    /// states them precomputed (cloudflare/boringtun, src/noise/handshake.rs, INITIAL_CHAIN_KEY
    /// and INITIAL_CHAIN_HASH; WireGuard paper, section 5.4.2). Replacing either function with
    /// another constant, or changing CONSTRUCTION/IDENTIFIER, turns this red.
    #[test]
    fn initial_chaining_key_and_hash_match_the_published_values() {
        let ck: [u8; 32] = [
            96, 226, 109, 174, 243, 39, 239, 192, 46, 195, 53, 226, 160, 37, 210, 208, 22, 235, 66,
            6, 248, 114, 119, 245, 45, 56, 209, 152, 139, 120, 205, 54,
        ];
        let h: [u8; 32] = [
            34, 17, 179, 97, 8, 26, 197, 102, 105, 18, 67, 219, 69, 138, 213, 50, 45, 156, 108,
            102, 34, 147, 232, 183, 14, 225, 156, 101, 186, 7, 158, 243,
        ];
        assert_eq!(initial_chaining_key(), ck);
        assert_eq!(initial_hash(), h);
    }

    /// A transport message's AEAD, done with the chacha20poly1305 crate (not `Keypair`): proves
    /// that session keys are the ones an independent implementation derives.
    fn seal_keepalive(key: &[u8; 32], receiver: u32) -> Vec<u8> {
        use chacha20poly1305::aead::{Aead, KeyInit};
        let mut msg = vec![4, 0, 0, 0];
        msg.extend_from_slice(&receiver.to_le_bytes());
        msg.extend_from_slice(&0u64.to_le_bytes());
        let aead = chacha20poly1305::ChaCha20Poly1305::new(key.into());
        msg.extend(aead.encrypt(&[0u8; 12].into(), &[][..]).unwrap());
        msg
    }

    fn open_transport(key: &[u8; 32], msg: &[u8]) -> Option<Vec<u8>> {
        use chacha20poly1305::aead::{Aead, KeyInit};
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&msg[8..16]);
        let aead = chacha20poly1305::ChaCha20Poly1305::new(key.into());
        aead.decrypt(&nonce.into(), &msg[16..]).ok()
    }

    /// Interoperability with boringtun's `noise::Tunn`, an independent implementation, in both
    /// roles: a mistake made the same way on both of our sides (an all-zero DH result, a wrong
    /// mixing order) passes the tests above but not this one.
    #[test]
    fn boringtun_accepts_our_initiation_and_our_session_keys() {
        use boringtun::noise::{Tunn, TunnResult};
        use boringtun::x25519;
        let bt_secret = x25519::StaticSecret::random_from_rng(OsRng);
        let bt_public = x25519::PublicKey::from(&bt_secret).to_bytes();
        let ours = SoftKey::generate();
        let our_public = ours.public_key();
        let psk = [0x42; 32];
        let mut bt = Tunn::new(
            bt_secret,
            x25519::PublicKey::from(our_public),
            Some(psk),
            None,
            3,
            None,
        );
        let ss = ours.diffie_hellman(&bt_public).unwrap();
        let id = Identity::new(Arc::new(ours));
        let mut init = [0u8; INITIATION_LEN];
        let pending =
            create_initiation(&our_public, &bt_public, &ss, 5, Timestamp::now(), &mut init)
                .unwrap();
        crate::cookie::CookieState::new(&bt_public).add_macs(&mut init, std::time::Instant::now());
        let mut dst = vec![0u8; 2048];
        let resp = match bt.decapsulate(None, &init, &mut dst) {
            TunnResult::WriteToNetwork(r) => r.to_vec(),
            other => panic!("boringtun refused our initiation: {other:?}"),
        };
        let keys = consume_response(&id, &pending, &psk, &resp).unwrap();
        assert_eq!(keys.local_index, 5);
        // Our first transport message confirms the session to boringtun, which can then send.
        let keepalive = seal_keepalive(&keys.send, keys.remote_index);
        assert!(matches!(
            bt.decapsulate(None, &keepalive, &mut dst),
            TunnResult::Done
        ));
        let data = match bt.encapsulate(b"from boringtun", &mut dst) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            other => panic!("{other:?}"),
        };
        assert_eq!(read_u32(&data, 4), 5);
        let plain = open_transport(&keys.receive, &data).expect("our receive key opens it");
        assert_eq!(&plain[..14], b"from boringtun");
    }

    #[test]
    fn we_answer_boringtuns_initiation_with_keys_it_shares() {
        use boringtun::noise::{Tunn, TunnResult};
        use boringtun::x25519;
        let bt_secret = x25519::StaticSecret::random_from_rng(OsRng);
        let bt_public = x25519::PublicKey::from(&bt_secret).to_bytes();
        let ours = SoftKey::generate();
        let our_public = ours.public_key();
        let mut bt = Tunn::new(
            bt_secret,
            x25519::PublicKey::from(our_public),
            None,
            None,
            3,
            None,
        );
        let ss = ours.diffie_hellman(&bt_public).unwrap();
        let id = Identity::new(Arc::new(ours));
        let mut dst = vec![0u8; 2048];
        let init = match bt.format_handshake_initiation(&mut dst, true) {
            TunnResult::WriteToNetwork(i) => i.to_vec(),
            other => panic!("{other:?}"),
        };
        let received = consume_initiation(&id, &init).unwrap();
        assert_eq!(received.initiator_public(), bt_public);
        assert_eq!(received.sender_index(), read_u32(&init, INIT_SENDER));
        let init_array: [u8; INITIATION_LEN] = init[..].try_into().unwrap();
        assert_eq!(
            initiation_ephemeral(&init_array),
            init[INIT_EPHEMERAL..INIT_STATIC]
        );
        let (_, state) = accept_initiation(received, &ss).unwrap();
        let mut resp = [0u8; RESPONSE_LEN];
        let keys = create_response(state, &bt_public, &[0; 32], 9, &mut resp).unwrap();
        crate::cookie::CookieState::new(&bt_public).add_macs(&mut resp, std::time::Instant::now());
        // boringtun confirms the session with a keepalive made with its send key.
        let keepalive = match bt.decapsulate(None, &resp, &mut dst) {
            TunnResult::WriteToNetwork(k) => k.to_vec(),
            other => panic!("boringtun refused our response: {other:?}"),
        };
        assert_eq!(read_u32(&keepalive, 4), 9);
        assert_eq!(open_transport(&keys.receive, &keepalive), Some(vec![]));
        let ours_to_bt = seal_keepalive(&keys.send, keys.remote_index);
        assert!(matches!(
            bt.decapsulate(None, &ours_to_bt, &mut dst),
            TunnResult::Done
        ));
    }

    #[test]
    fn a_replaced_identity_answers_with_the_new_key() {
        let Initiated { init, rid, .. } = initiated(1);
        assert!(consume_initiation(&rid, &init).is_ok());
        let other = SoftKey::generate();
        let other_public = other.public_key();
        rid.replace(Arc::new(other));
        assert_eq!(rid.public_key(), other_public);
        assert_eq!(
            consume_initiation(&rid, &init).err(),
            Some(HandshakeError::Decrypt("initiation static key")),
            "an initiation to the old key no longer decrypts"
        );
    }

    #[test]
    fn random_messages_are_errors_not_panics() {
        let Initiated {
            iid, rid, pending, ..
        } = initiated(77);
        let mut x: u64 = 0x0123_4567_89ab_cdef;
        for round in 0..200 {
            let mut msg = [0u8; INITIATION_LEN];
            for b in msg.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            msg[..4].copy_from_slice(&[1, 0, 0, 0]);
            assert!(consume_initiation(&rid, &msg).is_err(), "round {round}");
            let mut resp = [0u8; RESPONSE_LEN];
            resp.copy_from_slice(&msg[..RESPONSE_LEN]);
            resp[..4].copy_from_slice(&[2, 0, 0, 0]);
            resp[RESP_RECEIVER..RESP_RECEIVER + 4].copy_from_slice(&77u32.to_le_bytes());
            assert!(
                consume_response(&iid, &pending, &[0; 32], &resp).is_err(),
                "round {round}"
            );
        }
    }
}
