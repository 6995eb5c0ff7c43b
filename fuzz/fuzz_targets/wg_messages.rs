//! WireGuard message handling in the protocol core, against peers with a live session:
//! handshake initiation, response, cookie reply and transport data, as arbitrary bytes, as
//! well-formed messages (right type, size and, optionally, a live receiver index) with
//! arbitrary contents, and as real messages with bytes changed. Each is handled as the
//! device handles it, on both sides. Outcome: nothing panics, nothing forged is accepted,
//! and the live session carries data both ways afterwards.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wg_pkcs11::cookie::CookieChecker;
use wg_pkcs11::key::SoftKey;
use wg_pkcs11::noise::index::IndexTable;
use wg_pkcs11::noise::{
    consume_initiation, message_type, receiver_index, Identity, MessageType, COOKIE_REPLY_LEN,
    INITIATION_LEN, RESPONSE_LEN,
};
use wg_pkcs11::peer::Peer;

#[derive(Arbitrary, Debug)]
enum Message {
    Raw(Vec<u8>),
    /// Type byte, three zeros, the exact length; `live` puts a live receiver index in.
    Shaped {
        kind: u8,
        live: bool,
        body: Vec<u8>,
        transport_len: u16,
    },
    /// A real message of this session, with bytes XORed.
    Mutated {
        kind: u8,
        edits: Vec<(u16, u8)>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    to_initiator: bool,
    later_secs: u8,
    messages: Vec<Message>,
}

struct Side {
    id: Identity,
    table: IndexTable<Peer>,
    peer: Arc<Peer>,
    addr: SocketAddr,
}

fn side(
    secret: u8,
    peer_public: [u8; 32],
    addr: &str,
    now: Instant,
) -> (Identity, IndexTable<Peer>, Arc<Peer>, SocketAddr) {
    let id = Identity::new(Arc::new(SoftKey::from_bytes([secret; 32])));
    let addr: SocketAddr = addr.parse().unwrap();
    (
        id,
        IndexTable::new(),
        Peer::new(peer_public, None, None, 0, now),
        addr,
    )
}

fn public(secret: u8) -> [u8; 32] {
    Identity::new(Arc::new(SoftKey::from_bytes([secret; 32]))).public_key()
}

fn transport(from: &Side, payload: &[u8], now: Instant) -> Vec<u8> {
    let kp = from.peer.current_keypair(now).expect("a live session");
    let mut buf = vec![0u8; payload.len() + 64];
    buf[16..16 + payload.len()].copy_from_slice(payload);
    let len = kp.encrypt(&mut buf, payload.len(), now).expect("encrypt");
    from.peer.sent_transport(&kp, len, payload.is_empty(), now);
    buf.truncate(len);
    buf
}

/// What the device does with a datagram from `src`; true if it was accepted as genuine.
fn handle(to: &Side, msg: &[u8], src: SocketAddr, now: Instant) -> bool {
    let checker = CookieChecker::new(&to.id.public_key());
    match message_type(msg) {
        Some(MessageType::Initiation) => {
            let _ = checker.check_mac2(msg, src, now);
            let _ = checker.create_cookie_reply(msg, src, now);
            if !checker.check_mac1(msg) {
                return false;
            }
            match consume_initiation(&to.id, msg) {
                Ok(received) => {
                    assert_eq!(
                        received.initiator_public(),
                        to.peer.public_key(),
                        "forged initiator"
                    );
                    to.peer
                        .accept_initiation(&to.id, &to.table, received, src, now)
                        .is_ok()
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    false
                }
            }
        }
        Some(MessageType::Response) => {
            if !checker.check_mac1(msg) {
                return false;
            }
            let Some(peer) = receiver_index(msg).and_then(|i| to.table.get(i)) else {
                return false;
            };
            peer.consume_response(&to.id, &to.table, msg, src, now)
                .is_ok()
        }
        Some(MessageType::CookieReply) => {
            let Some(peer) = receiver_index(msg).and_then(|i| to.table.get(i)) else {
                return false;
            };
            peer.consume_cookie_reply(msg, now).is_ok()
        }
        Some(MessageType::Transport) => {
            let Some(index) = receiver_index(msg) else {
                return false;
            };
            let Some(peer) = to.table.get(index) else {
                return false;
            };
            let Some(kp) = peer.keypair_for_index(index) else {
                return false;
            };
            let mut buf = msg.to_vec();
            match kp.decrypt(&mut buf, now) {
                Ok(n) => {
                    peer.received_transport(&kp, src, msg.len(), n == 0, now);
                    true
                }
                Err(_) => false,
            }
        }
        None => false,
    }
}

/// The two peers with their live session, and one real message of each kind. Built once
/// (a handshake is slow under coverage instrumentation) and shared by every input: what one
/// input does to the peers' state (counters, replay windows) is state the next one meets.
struct Fixture {
    a: Side,
    b: Side,
    t0: Instant,
    init: [u8; INITIATION_LEN],
    resp: [u8; RESPONSE_LEN],
    cookie: [u8; COOKIE_REPLY_LEN],
    data: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let t0 = Instant::now();
        let (a_id, a_table, a_peer, a_addr) = side(1, public(2), "192.0.2.1:51820", t0);
        let (b_id, b_table, b_peer, b_addr) = side(2, public(1), "192.0.2.2:51820", t0);
        a_peer.set_endpoint(Some(b_addr));
        let a = Side {
            id: a_id,
            table: a_table,
            peer: a_peer,
            addr: a_addr,
        };
        let b = Side {
            id: b_id,
            table: b_table,
            peer: b_peer,
            addr: b_addr,
        };
        // A live session: initiation, response, and a first transport message confirming it.
        let init = a
            .peer
            .create_initiation(&a.id, &a.table, false, t0)
            .unwrap();
        let received = consume_initiation(&b.id, &init).unwrap();
        let resp = b
            .peer
            .accept_initiation(&b.id, &b.table, received, a.addr, t0)
            .unwrap();
        a.peer
            .consume_response(&a.id, &a.table, &resp, b.addr, t0)
            .unwrap();
        let first = transport(&a, b"confirm", t0);
        assert!(handle(&b, &first, a.addr, t0));
        let data = transport(&b, b"data", t0);
        let cookie = CookieChecker::new(&b.id.public_key())
            .create_cookie_reply(&init, a.addr, t0)
            .expect("a cookie reply for a valid initiation");
        Fixture {
            a,
            b,
            t0,
            init,
            resp,
            cookie,
            data,
        }
    })
}

fuzz_target!(|input: Input| {
    let Fixture {
        a,
        b,
        t0,
        init,
        resp,
        cookie,
        data,
    } = fixture();
    let (t0, init, resp, cookie) = (*t0, *init, *resp, *cookie);
    let now = t0 + Duration::from_secs(input.later_secs.into());
    let (to, from) = if input.to_initiator {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let live_index = to.peer.current_keypair(now).map(|kp| kp.local_index());
    for message in input.messages.into_iter().take(8) {
        let msg = match message {
            Message::Raw(bytes) => bytes,
            Message::Shaped {
                kind,
                live,
                body,
                transport_len,
            } => {
                let kind = kind % 4 + 1;
                let len = match kind {
                    1 => INITIATION_LEN,
                    2 => RESPONSE_LEN,
                    3 => COOKIE_REPLY_LEN,
                    _ => 32 + usize::from(transport_len) % 1500,
                };
                let mut msg = vec![0u8; len];
                msg[0] = kind;
                for (i, b) in body.iter().take(len - 4).enumerate() {
                    msg[4 + i] = *b;
                }
                if let (true, Some(index), true) = (live, live_index, kind != 1) {
                    msg[4..8].copy_from_slice(&index.to_le_bytes());
                }
                msg
            }
            Message::Mutated { kind, edits } => {
                let original = match kind % 4 {
                    0 => init.to_vec(),
                    1 => resp.to_vec(),
                    2 => cookie.to_vec(),
                    _ => data.clone(),
                };
                let mut msg = original.clone();
                for (at, xor) in edits.into_iter().take(8) {
                    let at = usize::from(at) % msg.len();
                    msg[at] ^= xor;
                }
                if msg == original {
                    // The genuine message (edits that cancel out): `data` was never
                    // delivered, so it is rightly accepted once; not a forgery.
                    continue;
                }
                msg
            }
        };
        assert!(
            !handle(to, &msg, from.addr, now),
            "a forged message was accepted: {msg:02x?}"
        );
    }
    // The session is unharmed: data crosses both ways.
    if a.peer.current_keypair(now).is_some() {
        let msg = transport(&a, b"after", now);
        assert!(
            handle(&b, &msg, a.addr, now),
            "A -> B broken by the fuzzed messages"
        );
        let msg = transport(&b, b"after", now);
        assert!(
            handle(&a, &msg, b.addr, now),
            "B -> A broken by the fuzzed messages"
        );
    }
});
