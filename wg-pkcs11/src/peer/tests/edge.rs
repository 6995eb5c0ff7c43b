//! Edge cases of `peer.rs` that mutation testing (scripts/mutants) found unchecked: exact
//! counters, the boundaries of the rate limits, what a key rotation and a removal leave behind.
//! Uses the two in-process peers of `tests.rs`.

use super::*;
use crate::timers::{KEEPALIVE_TIMEOUT, REJECT_AFTER_TIME};

#[test]
fn handshake_messages_are_counted_exactly() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    handshake(&a, &b, t0).unwrap();
    assert_eq!(a.peer().tx_bytes(), INITIATION_LEN as u64);
    assert_eq!(a.peer().rx_bytes(), RESPONSE_LEN as u64);
    assert_eq!(b.peer().rx_bytes(), INITIATION_LEN as u64);
    assert_eq!(b.peer().tx_bytes(), RESPONSE_LEN as u64);
    // Sending a handshake message counts as sending something: no keepalive is owed for data
    // received before it.
    transfer(&a, &b, b"data", t0).unwrap();
    // (b answered at t0: its own initiation may go REKEY_TIMEOUT later.)
    let t1 = t0 + REKEY_TIMEOUT;
    handshake(&b, &a, t1).unwrap();
    assert!(
        !b.peer()
            .tick(&b.table, t1 + KEEPALIVE_TIMEOUT)
            .send_keepalive
    );
}

#[test]
fn a_handshake_may_be_asked_for_again_exactly_rekey_timeout_later() {
    let t0 = Instant::now();
    let peer = Peer::new([7; 32], None, None, 0, t0);
    assert!(
        peer.wants_handshake(t0),
        "a request at the peer's creation counts"
    );
    assert!(!peer.wants_handshake(t0 + Duration::from_secs(1)));
    assert!(!peer.wants_handshake(t0 + REKEY_TIMEOUT - Duration::from_millis(1)));
    assert!(peer.wants_handshake(t0 + REKEY_TIMEOUT));
}

/// Receiving on the `previous` session, old enough to rekey, while `current` is young: the
/// handshake that replaced it already happened, so no new one is asked for.
#[test]
fn an_old_previous_session_asks_for_no_rekey_when_current_is_young() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    handshake(&a, &b, t0).unwrap();
    transfer(&a, &b, b"s0", t0).unwrap();
    let old_a = a.peer().current_keypair(t0).unwrap();
    let old_b = b.peer().current_keypair(t0).unwrap();
    let edge = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT;
    let t1 = t0 + edge + Duration::from_secs(1);
    handshake(&a, &b, t1).unwrap();
    assert!(a.peer().keypair_for_index(old_a.local_index()).is_some());
    let mut buf = [0u8; 64];
    let len = old_b.encrypt(&mut buf, 0, t1).unwrap();
    old_a.decrypt(&mut buf[..len], t1).unwrap();
    assert!(
        !a.peer().received_transport(&old_a, b.addr, len, true, t1),
        "current is young"
    );
    // The same old session as current does ask (the rule the line above must not hide).
    let (c, d) = pair(None, t0);
    handshake(&c, &d, t0).unwrap();
    transfer(&c, &d, b"s0", t0).unwrap();
    let ckp = c.peer().current_keypair(t0).unwrap();
    let dkp = d.peer().current_keypair(t0).unwrap();
    let len = dkp.encrypt(&mut buf, 0, t1).unwrap();
    ckp.decrypt(&mut buf[..len], t1).unwrap();
    assert!(c.peer().received_transport(&ckp, d.addr, len, true, t1));
}

#[test]
fn a_precomputed_static_static_is_the_one_token_operation_of_the_first_initiation() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    a.peer().precompute_static_static(&a.id).unwrap();
    assert_eq!(a.dh_count(), 1);
    a.peer()
        .create_initiation(&a.id, &a.table, false, t0)
        .unwrap();
    assert_eq!(a.dh_count(), 1, "ss came from the cache");
    drop(b);
}

#[test]
fn a_replaced_static_key_drops_the_cache_and_the_pending_initiation() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    a.peer()
        .create_initiation(&a.id, &a.table, false, t0)
        .unwrap();
    assert_eq!((a.dh_count(), a.table.len()), (1, 1));
    a.peer().static_key_replaced(&a.table);
    assert_eq!(a.table.len(), 0, "the pending initiation's index is freed");
    // At once, not REKEY_TIMEOUT later, and with ss computed again.
    let t1 = t0 + Duration::from_secs(1);
    a.peer()
        .create_initiation(&a.id, &a.table, false, t1)
        .unwrap();
    assert_eq!(a.dh_count(), 2);
    drop(b);
}

/// A response that does not decrypt (forged, or meant for an older initiation with the same
/// index) leaves the initiation pending: the real response still completes the handshake.
#[test]
fn a_bad_response_leaves_the_initiation_pending_for_the_real_one() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    let init = a
        .peer()
        .create_initiation(&a.id, &a.table, false, t0)
        .unwrap();
    let rx = consume_initiation(&b.id, &init).unwrap();
    let resp = b
        .peer()
        .accept_initiation(&b.id, &b.table, rx, a.addr, t0)
        .unwrap();
    let mut forged = resp;
    forged[50] ^= 1; // in the encrypted empty payload
    assert_eq!(
        a.peer()
            .consume_response(&a.id, &a.table, &forged, b.addr, t0),
        Err(HandshakeError::Decrypt("response"))
    );
    a.peer()
        .consume_response(&a.id, &a.table, &resp, b.addr, t0)
        .expect("the real response still completes the handshake");
    assert_eq!(transfer(&a, &b, b"up", t0).unwrap(), b"up");
}

#[test]
fn the_peer_reports_its_key_and_whether_it_was_cleared() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    assert_eq!(a.peer().public_key(), b.id.public_key());
    assert!(!a.peer().is_closed());
    a.peer().clear(&a.table);
    assert!(a.peer().is_closed());
}

/// Removal while the token works for a response that then fails to decrypt: the initiation is
/// not put back on the removed peer, and its index is freed.
#[test]
fn a_failed_response_on_a_removed_peer_frees_its_index() {
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
    let mut resp = b
        .peer()
        .accept_initiation(&b.id, &b.table, rx, "192.0.2.1:1".parse().unwrap(), t0)
        .unwrap();
    resp[50] ^= 1;
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
    a_peer.clear(&a_table);
    release_tx.send(()).unwrap();
    assert_eq!(
        worker.join().unwrap(),
        Err(HandshakeError::Decrypt("response"))
    );
    assert_eq!(a_table.len(), 0, "no index left behind");
}

/// What is not the response to the pending initiation (another receiver index, a truncated
/// message) is refused as `NoPendingHandshake` before the pending initiation is touched or the
/// token asked; the real response still completes the handshake.
#[test]
fn what_is_not_the_pending_response_costs_no_token_operation() {
    let t0 = Instant::now();
    let (a, b) = pair(None, t0);
    let init = a
        .peer()
        .create_initiation(&a.id, &a.table, false, t0)
        .unwrap();
    let rx = consume_initiation(&b.id, &init).unwrap();
    let resp = b
        .peer()
        .accept_initiation(&b.id, &b.table, rx, a.addr, t0)
        .unwrap();
    let dh = a.dh_count();
    let mut other = resp;
    other[8] ^= 1;
    for msg in [&other[..], &resp[..RESPONSE_LEN - 1]] {
        assert_eq!(
            a.peer().consume_response(&a.id, &a.table, msg, b.addr, t0),
            Err(HandshakeError::NoPendingHandshake)
        );
    }
    assert_eq!(a.dh_count(), dh, "no token operation");
    a.peer()
        .consume_response(&a.id, &a.table, &resp, b.addr, t0)
        .unwrap();
}
