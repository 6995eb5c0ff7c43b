//! Unit tests of `peer.rs`: two in-process peers with software keys, messages passed by hand.

use super::*;
use crate::cookie::CookieChecker;
use crate::key::{KeyError, SoftKey, StaticKey};
use crate::noise::{consume_initiation, receiver_index};
use crate::timers::KEEPALIVE_TIMEOUT;
use crate::timers::{REJECT_AFTER_TIME, REKEY_AFTER_TIME};
use std::sync::atomic::AtomicUsize;

/// A software key that counts its Diffie-Hellman operations (a token's C_DeriveKey calls).
struct CountingKey {
    inner: SoftKey,
    count: AtomicUsize,
}

impl StaticKey for CountingKey {
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }
    fn diffie_hellman(&self, p: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.inner.diffie_hellman(p)
    }
}

/// A key whose token can be switched off, like an unplugged or failing secure element.
struct FlakyKey {
    inner: SoftKey,
    failing: std::sync::atomic::AtomicBool,
}

impl StaticKey for FlakyKey {
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }
    fn diffie_hellman(&self, p: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(KeyError::Token("CKR_DEVICE_ERROR".into()));
        }
        self.inner.diffie_hellman(p)
    }
}

#[test]
fn a_failing_token_keeps_the_current_session_and_later_handshakes_succeed() {
    let t0 = Instant::now();
    let flaky = Arc::new(FlakyKey {
        inner: SoftKey::generate(),
        failing: AtomicBool::new(true),
    });
    let a_id = Identity::new(flaky.clone());
    let a_table = IndexTable::new();
    let b = {
        let mut b = Side::new("192.0.2.2:1");
        b.peer = Some(Peer::new(a_id.public_key(), None, None, 0, t0));
        b
    };
    let a_peer = Peer::new(b.id.public_key(), None, Some(b.addr), 0, t0);
    // The per-peer ss fails: no initiation, and nothing cached.
    assert!(matches!(
        a_peer.create_initiation(&a_id, &a_table, false, t0),
        Err(HandshakeError::Key(KeyError::Token(_)))
    ));
    flaky.failing.store(false, Ordering::SeqCst);
    let a = Side {
        key: Arc::new(CountingKey {
            inner: SoftKey::generate(),
            count: AtomicUsize::new(0),
        }),
        id: a_id,
        table: a_table,
        peer: Some(a_peer),
        addr: "192.0.2.1:1".parse().unwrap(),
    };
    // The failed attempt counted: the next one comes REKEY_TIMEOUT later (as the kernel's
    // last_sent_handshake, set before the initiation is made).
    assert!(matches!(
        a.peer().create_initiation(&a.id, &a.table, false, t0),
        Err(HandshakeError::RateLimited)
    ));
    let t0 = t0 + REKEY_TIMEOUT;
    handshake(&a, &b, t0).unwrap();
    transfer(&a, &b, b"up", t0).unwrap();
    // The token fails during the rekey (se when the response arrives): the old session goes on.
    let t1 = t0 + Duration::from_secs(121);
    let init = a
        .peer()
        .create_initiation(&a.id, &a.table, false, t1)
        .unwrap();
    let rx = consume_initiation(&b.id, &init).unwrap();
    let resp = b
        .peer()
        .accept_initiation(&b.id, &b.table, rx, a.addr, t1)
        .unwrap();
    flaky.failing.store(true, Ordering::SeqCst);
    assert!(matches!(
        a.peer()
            .consume_response(&a.id, &a.table, &resp, b.addr, t1),
        Err(HandshakeError::Key(_))
    ));
    assert_eq!(transfer(&a, &b, b"still up", t1).unwrap(), b"still up");
    assert_eq!(transfer(&b, &a, b"both ways", t1).unwrap(), b"both ways");
    // The retransmit timer asks again; with the token back the handshake completes.
    flaky.failing.store(false, Ordering::SeqCst);
    let t2 = a.peer().next_deadline().unwrap().max(t1 + REKEY_TIMEOUT);
    let actions = a.peer().tick(&a.table, t2);
    assert!(actions.send_initiation && actions.initiation_is_retry);
    handshake(&a, &b, t2).unwrap();
    assert_eq!(
        transfer(&a, &b, b"new session", t2).unwrap(),
        b"new session"
    );
}

struct Side {
    key: Arc<CountingKey>,
    id: Identity,
    table: IndexTable<Peer>,
    peer: Option<Arc<Peer>>,
    addr: SocketAddr,
}

impl Side {
    fn new(addr: &str) -> Side {
        let key = Arc::new(CountingKey {
            inner: SoftKey::generate(),
            count: AtomicUsize::new(0),
        });
        let id = Identity::new(key.clone());
        Side {
            key,
            id,
            table: IndexTable::new(),
            peer: None,
            addr: addr.parse().unwrap(),
        }
    }
    fn dh_count(&self) -> usize {
        self.key.count.load(Ordering::SeqCst)
    }
    fn peer(&self) -> &Arc<Peer> {
        self.peer.as_ref().unwrap()
    }
}

fn pair(psk: Option<[u8; 32]>, now: Instant) -> (Side, Side) {
    let mut a = Side::new("192.0.2.1:51820");
    let mut b = Side::new("[2001:db8::2]:51821");
    a.peer = Some(Peer::new(b.id.public_key(), psk, Some(b.addr), 0, now));
    b.peer = Some(Peer::new(a.id.public_key(), psk, None, 0, now));
    (a, b)
}

/// One full handshake, `i` initiating; the responder's reply goes through the index table.
fn handshake(i: &Side, r: &Side, now: Instant) -> Result<(), HandshakeError> {
    let init = i.peer().create_initiation(&i.id, &i.table, false, now)?;
    assert!(CookieChecker::new(&r.id.public_key()).check_mac1(&init));
    let received = consume_initiation(&r.id, &init)?;
    assert_eq!(received.initiator_public(), i.id.public_key());
    let resp = r
        .peer()
        .accept_initiation(&r.id, &r.table, received, i.addr, now)?;
    assert!(CookieChecker::new(&i.id.public_key()).check_mac1(&resp));
    let peer = i
        .table
        .get(receiver_index(&resp).unwrap())
        .expect("index maps to the peer");
    assert!(Arc::ptr_eq(&peer, i.peer()));
    peer.consume_response(&i.id, &i.table, &resp, r.addr, now)
}

/// Send `payload` from `s` to `d` through the current sessions; returns the received bytes.
fn transfer(s: &Side, d: &Side, payload: &[u8], now: Instant) -> Result<Vec<u8>, String> {
    let kp = s.peer().current_keypair(now).ok_or("no sending session")?;
    let mut buf = vec![0u8; payload.len() + 64];
    buf[16..16 + payload.len()].copy_from_slice(payload);
    let len = kp
        .encrypt(&mut buf, payload.len(), now)
        .map_err(|e| e.to_string())?;
    s.peer().sent_transport(&kp, len, payload.is_empty(), now);
    buf.truncate(len);
    let peer = d
        .table
        .get(receiver_index(&buf).unwrap())
        .ok_or("unknown index")?;
    let rkp = peer
        .keypair_for_index(receiver_index(&buf).unwrap())
        .ok_or("no session")?;
    let n = rkp.decrypt(&mut buf, now).map_err(|e| e.to_string())?;
    peer.received_transport(&rkp, s.addr, len, n == 0, now);
    Ok(buf[16..16 + payload.len()].to_vec())
}

#[test]
fn handshake_then_transport_with_one_static_dh_per_side_plus_ss_once() {
    let t0 = Instant::now();
    let (a, b) = pair(Some([9; 32]), t0);
    handshake(&a, &b, t0).unwrap();
    assert_eq!(a.dh_count(), 2, "initiator: ss (once) + se");
    assert_eq!(b.dh_count(), 2, "responder: es + ss (once)");
    assert!(a.peer().current_keypair(t0).is_some());
    assert!(
        b.peer().current_keypair(t0).is_none(),
        "responder waits for confirmation"
    );
    assert_eq!(transfer(&a, &b, b"hello", t0).unwrap(), b"hello");
    assert!(
        b.peer().current_keypair(t0).is_some(),
        "first message confirmed it"
    );
    assert_eq!(transfer(&b, &a, b"world", t0).unwrap(), b"world");
    assert!(a.peer().last_handshake().is_some() && b.peer().last_handshake().is_some());
    assert_eq!(
        b.peer().endpoint(),
        Some(a.addr),
        "responder learned the endpoint"
    );

    // Later handshakes, in either role, cost exactly one static DH per side.
    let t1 = t0 + Duration::from_secs(10);
    handshake(&b, &a, t1).unwrap();
    assert_eq!((a.dh_count(), b.dh_count()), (3, 3));
    let t2 = t1 + Duration::from_secs(10);
    handshake(&a, &b, t2).unwrap();
    assert_eq!((a.dh_count(), b.dh_count()), (4, 4));
    assert_eq!(transfer(&a, &b, b"again", t2).unwrap(), b"again");
    assert_eq!(transfer(&b, &a, b"and back", t2).unwrap(), b"and back");
    assert!(a.peer().tx_bytes() > 0 && a.peer().rx_bytes() > 0);
}

#[test]
fn old_sessions_keep_working_during_rekey_and_indices_are_freed() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    for round in 0..20u64 {
        let now = t0 + Duration::from_secs(6 * round);
        let (i, r) = if round % 3 == 0 { (&b, &a) } else { (&a, &b) };
        handshake(i, r, now).unwrap();
        // A packet from the responder's old session still arrives: the initiator keeps it as
        // `previous`. (The first round has no old session.)
        let old = transfer(r, i, b"old", now);
        if round == 0 {
            assert_eq!(old, Err("no sending session".to_string()));
        } else {
            assert_eq!(old.as_deref(), Ok(&b"old"[..]), "round {round}");
        }
        assert_eq!(transfer(i, r, b"new", now).unwrap(), b"new");
        assert_eq!(transfer(r, i, b"reply", now).unwrap(), b"reply");
        assert!(
            a.table.len() <= 3 && b.table.len() <= 3,
            "round {round}: {} {}",
            a.table.len(),
            b.table.len()
        );
    }
    a.peer().clear(&a.table);
    assert_eq!(a.table.len(), 0);
    assert!(a.peer().current_keypair(t0).is_none());
}

#[test]
fn replayed_initiation_and_wrong_psk_are_refused() {
    let t0 = Instant::now();
    let (a, b) = pair(Some([1; 32]), t0);
    let init = a
        .peer()
        .create_initiation(&a.id, &a.table, false, t0)
        .unwrap();
    let rx = consume_initiation(&b.id, &init).unwrap();
    b.peer()
        .accept_initiation(&b.id, &b.table, rx, a.addr, t0)
        .unwrap();
    let rx = consume_initiation(&b.id, &init).unwrap();
    let later = t0 + Duration::from_secs(1);
    assert_eq!(
        b.peer()
            .accept_initiation(&b.id, &b.table, rx, a.addr, later)
            .err(),
        Some(HandshakeError::ReplayedTimestamp)
    );
    // An initiation for another peer object is refused.
    let stranger = Peer::new([3; 32], None, None, 0, t0);
    let rx = consume_initiation(&b.id, &init).unwrap();
    assert_eq!(
        stranger
            .accept_initiation(&b.id, &b.table, rx, a.addr, later)
            .err(),
        Some(HandshakeError::UnknownPeer)
    );
    // Mismatched preshared keys: the initiator refuses the response.
    b.peer().set_preshared_key(Some([2; 32]));
    let t1 = t0 + Duration::from_secs(6);
    assert_eq!(
        handshake(&a, &b, t1),
        Err(HandshakeError::Decrypt("response"))
    );
    // Initiations are rate-limited to one per REKEY_TIMEOUT.
    assert_eq!(
        a.peer()
            .create_initiation(&a.id, &a.table, false, t1 + Duration::from_secs(1))
            .err(),
        Some(HandshakeError::RateLimited)
    );
}

#[test]
fn roaming_follows_authenticated_packets_only() {
    let t0 = Instant::now();
    let (mut a, b) = pair(None, t0);
    handshake(&a, &b, t0).unwrap();
    transfer(&a, &b, b"x", t0).unwrap();
    assert_eq!(b.peer().endpoint(), Some(a.addr));
    a.addr = "198.51.100.7:4000".parse().unwrap();
    transfer(&a, &b, b"y", t0).unwrap();
    assert_eq!(b.peer().endpoint(), Some(a.addr), "moved with the peer");
    // (That forged or replayed packets from elsewhere move nothing is a property of the
    // receive path, which only reports authenticated packets: device_malformed sends them
    // to a running device.)
    a.addr = "203.0.113.9:5000".parse().unwrap();
    transfer(&b, &a, b"z", t0).unwrap();
    assert_eq!(
        b.peer().endpoint(),
        Some("198.51.100.7:4000".parse().unwrap()),
        "sending moves nothing"
    );
    transfer(&a, &b, b"w", t0).unwrap();
    assert_eq!(b.peer().endpoint(), Some(a.addr));
}

#[test]
fn rekey_after_time_and_reject_after_time() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    handshake(&a, &b, t0).unwrap();
    transfer(&a, &b, b"x", t0).unwrap();
    let kp = a.peer().current_keypair(t0).unwrap();
    let later = t0 + REKEY_AFTER_TIME;
    assert!(
        a.peer().sent_transport(&kp, 32, false, later),
        "initiator rekeys after 120 s"
    );
    assert!(
        !a.peer().sent_transport(&kp, 32, false, later),
        "asked once per REKEY_TIMEOUT"
    );
    let bkp = b.peer().current_keypair(t0).unwrap();
    assert!(
        !b.peer().sent_transport(&bkp, 32, false, later),
        "the responder does not"
    );
    assert!(a.peer().current_keypair(t0 + REJECT_AFTER_TIME).is_none());
    assert!(b.peer().current_keypair(t0 + REJECT_AFTER_TIME).is_none());
}

#[test]
fn timers_drive_keepalive_retries_and_zeroing() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    handshake(&a, &b, t0).unwrap();
    transfer(&a, &b, b"data", t0).unwrap();
    // b received data and sent nothing: a keepalive after KEEPALIVE_TIMEOUT.
    assert!(
        b.peer()
            .tick(&b.table, t0 + Duration::from_secs(10))
            .send_keepalive
    );
    // a sent data and heard nothing: a new handshake after 15 s (+ jitter).
    let act = a.peer().tick(&a.table, t0 + Duration::from_secs(16));
    assert!(act.send_initiation && !act.initiation_is_retry);
    // Keys are zeroed 3 x REJECT_AFTER_TIME after the last session; indices freed.
    let index = b.peer().current_keypair(t0).unwrap().local_index();
    assert!(b.peer().keypair_for_index(index).is_some());
    let act = b.peer().tick(&b.table, t0 + REJECT_AFTER_TIME * 3);
    assert!(act.zero_keys);
    assert_eq!(b.table.len(), 0);
    assert!(b.peer().keypair_for_index(index).is_none());
}

#[test]
fn sessions_held_elsewhere_stop_working_once_dropped() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    handshake(&a, &b, t0).unwrap();
    transfer(&a, &b, b"x", t0).unwrap();
    let held = b.peer().current_keypair(t0).unwrap();
    let sender = a.peer().current_keypair(t0).unwrap();
    b.peer().zero_keys(&b.table);
    let mut buf = [0u8; 64];
    let len = sender.encrypt(&mut buf, 8, t0).unwrap();
    assert!(
        held.decrypt(&mut buf[..len], t0).is_err(),
        "a cached Arc must not outlive zeroing"
    );
    assert!(!held.is_valid());
}

#[test]
fn a_configured_peer_stays_small() {
    // Issue 5: under 4 KiB per additional configured peer, AllowedIPs and device state included.
    let size = std::mem::size_of::<Peer>();
    eprintln!(
        "size_of::<Peer>() = {size}, size_of::<Keypair>() = {}",
        std::mem::size_of::<Keypair>()
    );
    assert!(size < 1024, "Peer is {size} bytes");
}

#[test]
fn cookie_reply_makes_the_next_initiation_pass_mac2() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    let checker = CookieChecker::new(&b.id.public_key());
    let init = a
        .peer()
        .create_initiation(&a.id, &a.table, false, t0)
        .unwrap();
    assert!(checker.check_mac1(&init) && !checker.check_mac2(&init, a.addr, t0));
    let reply = checker.create_cookie_reply(&init, a.addr, t0).unwrap();
    let peer = a.table.get(receiver_index(&reply).unwrap()).unwrap();
    peer.consume_cookie_reply(&reply, t0).unwrap();
    let t1 = t0 + Duration::from_secs(5);
    let init = a
        .peer()
        .create_initiation(&a.id, &a.table, true, t1)
        .unwrap();
    assert!(checker.check_mac1(&init) && checker.check_mac2(&init, a.addr, t1));
}

#[test]
fn initiations_from_a_peer_are_consumed_at_most_every_20_ms() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    let init = a
        .peer()
        .create_initiation(&a.id, &a.table, false, t0)
        .unwrap();
    let rx = consume_initiation(&b.id, &init).unwrap();
    b.peer()
        .accept_initiation(&b.id, &b.table, rx, a.addr, t0)
        .unwrap();
    // The initiator's own limit is REKEY_TIMEOUT (its `now`); the responder's clock says 10 ms.
    let init = a
        .peer()
        .create_initiation(&a.id, &a.table, false, t0 + REKEY_TIMEOUT)
        .unwrap();
    let rx = consume_initiation(&b.id, &init).unwrap();
    assert_eq!(
        b.peer()
            .accept_initiation(&b.id, &b.table, rx, a.addr, t0 + Duration::from_millis(10))
            .err(),
        Some(HandshakeError::RateLimited),
        "a newer initiation 10 ms after the last one is refused"
    );
    let rx = consume_initiation(&b.id, &init).unwrap();
    b.peer()
        .accept_initiation(&b.id, &b.table, rx, a.addr, t0 + MIN_INITIATION_INTERVAL)
        .expect("20 ms later it is consumed");
}

#[test]
fn the_initiator_rekeys_when_receiving_on_a_session_near_its_end() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    handshake(&a, &b, t0).unwrap();
    transfer(&a, &b, b"x", t0).unwrap();
    let rkp = a.peer().current_keypair(t0).unwrap();
    let bkp = b.peer().current_keypair(t0).unwrap();
    let receive = |at: Instant| {
        let mut buf = [0u8; 64];
        let len = bkp.encrypt(&mut buf, 0, at).unwrap();
        let n = rkp.decrypt(&mut buf[..len], at).unwrap();
        a.peer().received_transport(&rkp, b.addr, len, n == 0, at)
    };
    let edge = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT;
    assert!(!receive(t0 + edge - Duration::from_secs(1)), "not yet");
    assert!(
        receive(t0 + edge),
        "165 s: the initiator asks for a handshake"
    );
    assert!(
        !receive(t0 + edge + Duration::from_secs(6)),
        "once per session"
    );
    // The responder never rekeys on receive.
    let mut buf = [0u8; 64];
    let len = rkp.encrypt(&mut buf, 0, t0 + edge).unwrap();
    let n = bkp.decrypt(&mut buf[..len], t0 + edge).unwrap();
    assert!(!b
        .peer()
        .received_transport(&bkp, a.addr, len, n == 0, t0 + edge));
}

#[test]
fn a_new_responder_session_drops_previous() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    handshake(&a, &b, t0).unwrap();
    transfer(&a, &b, b"s0", t0).unwrap();
    let s0 = b.peer().current_keypair(t0).unwrap();
    let t1 = t0 + Duration::from_secs(6);
    handshake(&a, &b, t1).unwrap();
    transfer(&a, &b, b"s1", t1).unwrap();
    // b: current s1, previous s0.
    assert!(b.peer().keypair_for_index(s0.local_index()).is_some());
    let t2 = t1 + Duration::from_secs(6);
    handshake(&a, &b, t2).unwrap();
    // b: next s2, current s1, and s0 gone (the kernel's rule: at most three slots).
    assert!(b.peer().keypair_for_index(s0.local_index()).is_none());
    assert!(!s0.is_valid());
    assert!(b.table.get(s0.local_index()).is_none());
    assert_eq!(transfer(&b, &a, b"s1 still", t2).unwrap(), b"s1 still");
}

#[test]
fn wants_handshake_asks_once_per_rekey_timeout() {
    let t0 = Instant::now();
    let peer = Peer::new([7; 32], None, None, 0, t0);
    assert!(
        peer.wants_handshake(t0 + Duration::from_millis(1)),
        "the first request"
    );
    assert!(!peer.wants_handshake(t0 + Duration::from_secs(1)));
    assert!(!peer.wants_handshake(t0 + REKEY_TIMEOUT));
    assert!(peer.wants_handshake(t0 + REKEY_TIMEOUT + Duration::from_millis(2)));
}

#[test]
fn the_setters_change_what_the_handshake_and_timers_use() {
    let t0 = Instant::now();
    let (a, b) = pair(Some([4; 32]), t0);
    assert_eq!(a.peer().preshared_key(), Some([4; 32]));
    a.peer().set_preshared_key(None);
    assert_eq!(a.peer().preshared_key(), None);
    assert_eq!(
        handshake(&a, &b, t0),
        Err(HandshakeError::Decrypt("response")),
        "the new (absent) key is the one used"
    );
    b.peer().set_preshared_key(None);
    handshake(&a, &b, t0 + REKEY_TIMEOUT).unwrap();

    let moved: SocketAddr = "192.0.2.77:9".parse().unwrap();
    a.peer().set_endpoint(Some(moved));
    assert_eq!(a.peer().endpoint(), Some(moved));
    a.peer().set_endpoint(None);
    assert_eq!(a.peer().endpoint(), None);

    assert_eq!(a.peer().persistent_keepalive(), 0);
    let t1 = t0 + Duration::from_secs(20);
    a.peer().set_persistent_keepalive(25, t1);
    assert_eq!(a.peer().persistent_keepalive(), 25);
    assert!(
        a.peer().tick(&a.table, t1).send_keepalive,
        "enabling it sends one at once"
    );
    a.peer().set_persistent_keepalive(0, t1);
    assert_eq!(a.peer().persistent_keepalive(), 0);
}

/// A key whose Diffie-Hellman waits until the test lets it go, like a slow or hung chip.
struct GatedKey {
    inner: SoftKey,
    entered: std::sync::mpsc::SyncSender<()>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
    gated: AtomicBool,
}

impl StaticKey for GatedKey {
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }
    fn diffie_hellman(&self, p: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        if self.gated.load(Ordering::SeqCst) {
            self.entered.send(()).unwrap();
            self.release.lock().recv().unwrap();
        }
        self.inner.diffie_hellman(p)
    }
}

/// Issue 15, point 3: removing a peer while the worker is in the token for its response must
/// neither wait for the token nor leave a session (and its index) behind afterwards.
#[test]
fn clearing_a_peer_during_its_token_operation_neither_waits_nor_leaves_keys() {
    let t0 = Instant::now();
    let (entered_tx, entered_rx) = std::sync::mpsc::sync_channel(1);
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    let key = Arc::new(GatedKey {
        inner: SoftKey::generate(),
        entered: entered_tx,
        release: Mutex::new(release_rx),
        gated: AtomicBool::new(false),
    });
    let a_id = Identity::new(key.clone());
    let a_table = Arc::new(IndexTable::new());
    let mut b = Side::new("192.0.2.2:1");
    b.peer = Some(Peer::new(a_id.public_key(), None, None, 0, t0));
    let a_peer = Peer::new(b.id.public_key(), None, Some(b.addr), 0, t0);
    let init = a_peer
        .create_initiation(&a_id, &a_table, false, t0)
        .unwrap();
    let rx = consume_initiation(&b.id, &init).unwrap();
    let resp = b
        .peer()
        .accept_initiation(&b.id, &b.table, rx, "192.0.2.1:1".parse().unwrap(), t0)
        .unwrap();
    key.gated.store(true, Ordering::SeqCst);
    let b_addr = b.addr;
    let worker = {
        let (peer, table) = (a_peer.clone(), a_table.clone());
        std::thread::spawn(move || peer.consume_response(&a_id, &table, &resp, b_addr, t0))
    };
    // Bounded: a worker that fails before the token must fail this test, not hang it.
    entered_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the worker never reached the token");
    // The token is busy inside consume_response: clear() must not wait for it.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let clearer = {
        let (peer, table) = (a_peer.clone(), a_table.clone());
        std::thread::spawn(move || {
            peer.clear(&table);
            done_tx.send(()).unwrap();
        })
    };
    let cleared = done_rx.recv_timeout(Duration::from_secs(5)).is_ok();
    release_tx.send(()).unwrap();
    clearer.join().unwrap();
    assert!(cleared, "clear() waited for the token operation");
    assert_eq!(worker.join().unwrap(), Err(HandshakeError::PeerRemoved));
    assert!(
        a_peer.current_keypair(t0).is_none(),
        "no session on a removed peer"
    );
    assert_eq!(a_table.len(), 0, "no index left behind");
    assert!(a_peer.is_closed());
}

#[path = "peer_edge_tests.rs"]
mod edge;

/// Issue 20: a keepalive-only initiator (persistent keepalive, no data) rekeys once its session
/// is REKEY_AFTER_TIME old, as the kernel's keep_key_fresh after every sent message, keepalives
/// included. Before, only data did, and such a session ran out at REJECT_AFTER_TIME.
#[test]
fn a_keepalive_on_an_initiators_old_session_starts_a_rekey() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    a.peer().set_persistent_keepalive(25, t0);
    handshake(&a, &b, t0).unwrap();
    let mut now = t0;
    let mut rekey_at = None;
    while now < t0 + REJECT_AFTER_TIME && rekey_at.is_none() {
        now += Duration::from_secs(1);
        let actions = a.peer().tick(&a.table, now);
        if actions.send_initiation {
            rekey_at = Some(now - t0);
        }
        if actions.send_keepalive {
            transfer(&a, &b, b"", now).unwrap();
        }
    }
    let rekey_at = rekey_at.expect("no rekey before the session ran out");
    assert!(
        rekey_at >= REKEY_AFTER_TIME && rekey_at <= REKEY_AFTER_TIME + Duration::from_secs(25),
        "rekeyed after {rekey_at:?}"
    );
}

/// Issue 20: answering an initiation starts the REKEY_TIMEOUT wait (the kernel's and
/// wireguard-go's last_sent_handshake), so an initiation of ours does not cross the response
/// and cost both sides a token operation.
#[test]
fn answering_an_initiation_starts_the_rekey_timeout_wait() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    handshake(&a, &b, t0).unwrap();
    let before = b.dh_count();
    assert!(matches!(
        b.peer()
            .create_initiation(&b.id, &b.table, false, t0 + Duration::from_secs(1)),
        Err(HandshakeError::RateLimited)
    ));
    assert_eq!(b.dh_count(), before);
    assert!(b
        .peer()
        .create_initiation(&b.id, &b.table, false, t0 + REKEY_TIMEOUT)
        .is_ok());
}

/// Issue 20: the REKEY_TIMEOUT spacing is checked, and the attempt counted, before the static
/// DH: a peer whose static-static DH fails (a small-order key, a failing token) costs one token
/// operation per REKEY_TIMEOUT, not one per packet that asks for a handshake.
#[test]
fn a_failing_static_dh_costs_one_token_operation_per_rekey_timeout() {
    let t0 = Instant::now();
    let mut a = Side::new("192.0.2.1:51820");
    a.peer = Some(Peer::new([0; 32], None, Some(a.addr), 0, t0));
    for i in 0..20u64 {
        let now = t0 + Duration::from_millis(100 * i);
        assert!(a
            .peer()
            .create_initiation(&a.id, &a.table, false, now)
            .is_err());
    }
    assert_eq!(a.dh_count(), 1, "one attempt in these 2 s");
    assert!(a
        .peer()
        .create_initiation(&a.id, &a.table, false, t0 + REKEY_TIMEOUT)
        .is_err());
    assert_eq!(a.dh_count(), 2);
}

/// Issue 20: as the kernel's timers (wg_expired_new_handshake, wg_expired_retransmit_handshake),
/// any timer that starts a handshake forgets the sticky source in case it is the trouble: data
/// sent for 15 s without an answer, as well as a retry.
#[test]
fn a_handshake_started_by_a_timer_forgets_the_sticky_source() {
    let local = crate::sticky::LocalAddr {
        ip: "198.51.100.5".parse().unwrap(),
        ifindex: 2,
    };
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    handshake(&a, &b, t0).unwrap();
    a.peer().sticky_source().learn(b.addr, Some(local));
    transfer(&a, &b, b"data, never answered", t0).unwrap();
    let actions = a.peer().tick(&a.table, t0 + Duration::from_secs(16));
    assert!(actions.send_initiation && !actions.initiation_is_retry);
    assert_eq!(a.peer().sticky_source().for_endpoint(b.addr), None);

    // A retry forgets it too.
    let t1 = t0 + Duration::from_secs(20);
    a.peer()
        .create_initiation(&a.id, &a.table, false, t1)
        .unwrap();
    a.peer().sticky_source().learn(b.addr, Some(local));
    let retry = a.peer().next_deadline().unwrap();
    let actions = a.peer().tick(&a.table, retry);
    assert!(actions.send_initiation && actions.initiation_is_retry);
    assert_eq!(a.peer().sticky_source().for_endpoint(b.addr), None);
}

/// Issue 20: every non-retry request for a handshake starts the attempts over.
#[test]
fn a_handshake_request_starts_the_attempts_over() {
    let t0 = Instant::now();
    let (a, _b) = pair(None, t0);
    a.peer()
        .create_initiation(&a.id, &a.table, false, t0)
        .unwrap();
    for _ in 0..3 {
        let now = a.peer().next_deadline().unwrap();
        assert!(a.peer().tick(&a.table, now).initiation_is_retry);
        a.peer()
            .create_initiation(&a.id, &a.table, true, now)
            .unwrap();
    }
    assert_eq!(a.peer().timers.lock().handshake_attempts(), 3);
    a.peer().handshake_wanted();
    assert_eq!(a.peer().timers.lock().handshake_attempts(), 0);
}
