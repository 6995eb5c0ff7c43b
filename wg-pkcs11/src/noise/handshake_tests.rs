//! Unit tests of `handshake.rs`: both roles in process with software keys, known answers, and
//! interoperability with boringtun's `noise::Tunn`.

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
    fn diffie_hellman(&self, _: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, crate::key::KeyError> {
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
        96, 226, 109, 174, 243, 39, 239, 192, 46, 195, 53, 226, 160, 37, 210, 208, 22, 235, 66, 6,
        248, 114, 119, 245, 45, 56, 209, 152, 139, 120, 205, 54,
    ];
    let h: [u8; 32] = [
        34, 17, 179, 97, 8, 26, 197, 102, 105, 18, 67, 219, 69, 138, 213, 50, 45, 156, 108, 102,
        34, 147, 232, 183, 14, 225, 156, 101, 186, 7, 158, 243,
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
        create_initiation(&our_public, &bt_public, &ss, 5, Timestamp::now(), &mut init).unwrap();
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
