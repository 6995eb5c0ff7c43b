//! The timers through a peer: rekey and reject after time, keepalives, retries, and the
//! REKEY_TIMEOUT spacing of handshakes (issue 20: as the kernel's timers).

use super::*;
use crate::timers::{KEEPALIVE_TIMEOUT, REJECT_AFTER_TIME, REKEY_AFTER_TIME};

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
