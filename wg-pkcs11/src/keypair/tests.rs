//! Unit tests of `keypair.rs`: padding, replay and tampering, limits of time and messages, counters.

use super::*;
use std::time::Duration;
use zeroize::Zeroizing;

/// Two ends of one session, born `now`: the first sends what the second receives.
pub(crate) fn pair(now: Instant) -> (Keypair, Keypair) {
    let a = SessionKeys {
        local_index: 1,
        remote_index: 2,
        send: Zeroizing::new([1; 32]),
        receive: Zeroizing::new([2; 32]),
        is_initiator: true,
    };
    let b = SessionKeys {
        local_index: 2,
        remote_index: 1,
        send: Zeroizing::new([2; 32]),
        receive: Zeroizing::new([1; 32]),
        is_initiator: false,
    };
    (Keypair::new(&a, now), Keypair::new(&b, now))
}

#[test]
fn round_trip_with_padding() {
    let now = Instant::now();
    let (a, b) = pair(now);
    for len in [0usize, 1, 15, 16, 17, 100, 1420] {
        let mut buf = vec![0u8; len + 64];
        for (i, x) in buf[16..16 + len].iter_mut().enumerate() {
            *x = i as u8;
        }
        let wire = a.encrypt(&mut buf, len, now).unwrap();
        assert_eq!(wire, 32 + padded_len(len));
        assert_eq!(wire % 16, 0);
        let n = b.decrypt(&mut buf[..wire], now).unwrap();
        assert_eq!(n, padded_len(len));
        for i in 0..len {
            assert_eq!(buf[16 + i], i as u8);
        }
        assert!(buf[16 + len..16 + n].iter().all(|&x| x == 0));
    }
}

#[test]
fn padding_is_bounded_by_the_buffer() {
    let now = Instant::now();
    let (a, b) = pair(now);
    let mut buf = vec![0u8; 32 + 17];
    let wire = a.encrypt(&mut buf, 17, now).unwrap();
    assert_eq!(wire, 32 + 17);
    assert_eq!(b.decrypt(&mut buf, now), Ok(17));
    assert_eq!(
        a.encrypt(&mut [0u8; 40], 9, now),
        Err(TransportError::BufferTooSmall)
    );
}

#[test]
fn replay_tamper_and_wrong_index_are_refused() {
    let now = Instant::now();
    let (a, b) = pair(now);
    let mut buf = [0u8; 64];
    let wire = a.encrypt(&mut buf, 16, now).unwrap();
    let sealed = buf;
    let mut copy = sealed;
    assert!(b.decrypt(&mut copy[..wire], now).is_ok());
    let mut copy = sealed;
    assert_eq!(
        b.decrypt(&mut copy[..wire], now),
        Err(TransportError::Replayed)
    );
    let mut copy = sealed;
    copy[20] ^= 1;
    assert_eq!(
        b.decrypt(&mut copy[..wire], now),
        Err(TransportError::Decrypt)
    );
    let mut copy = sealed;
    copy[4] ^= 1;
    assert_eq!(
        b.decrypt(&mut copy[..wire], now),
        Err(TransportError::Malformed)
    );
    // A forged counter (tag fails) must not move the replay window.
    let mut copy = sealed;
    copy[8..16].copy_from_slice(&1_000_000u64.to_le_bytes());
    assert_eq!(
        b.decrypt(&mut copy[..wire], now),
        Err(TransportError::Decrypt)
    );
    let wire = a.encrypt(&mut buf, 16, now).unwrap();
    assert!(b.decrypt(&mut buf[..wire], now).is_ok());
    assert_eq!(
        b.decrypt(&mut [0u8; 31], now),
        Err(TransportError::Malformed)
    );
}

/// The header is not covered by the AEAD (only the counter is, as the nonce): without the
/// header check a packet with another type or non-zero reserved bytes would be accepted.
#[test]
fn a_header_other_than_transport_with_zero_reserved_bytes_is_malformed() {
    let now = Instant::now();
    let (a, b) = pair(now);
    for (at, value) in [(0, 1u8), (0, 5), (1, 1), (2, 0x80), (3, 1)] {
        let mut buf = [0u8; 64];
        let wire = a.encrypt(&mut buf, 16, now).unwrap();
        let mut bad = buf;
        bad[at] = value;
        assert_eq!(
            b.decrypt(&mut bad[..wire], now),
            Err(TransportError::Malformed),
            "byte {at} = {value}"
        );
        // The untouched packet (same counter) still opens: the refusal cost nothing.
        assert_eq!(b.decrypt(&mut buf[..wire], now), Ok(16));
    }
}

#[test]
fn limits_of_time_and_messages() {
    let now = Instant::now();
    let (a, b) = pair(now);
    assert!(!a.needs_rekey_on_send(now));
    assert!(a.needs_rekey_on_send(now + REKEY_AFTER_TIME));
    assert!(
        !b.needs_rekey_on_send(now + REKEY_AFTER_TIME),
        "only the initiator rekeys on time"
    );
    assert!(a.needs_rekey_on_receive(now + Duration::from_secs(165)));
    assert!(!a.needs_rekey_on_receive(now + Duration::from_secs(164)));
    let mut buf = [0u8; 64];
    assert_eq!(
        a.encrypt(&mut buf, 0, now + REJECT_AFTER_TIME),
        Err(TransportError::Expired)
    );
    let wire = a.encrypt(&mut buf, 0, now).unwrap();
    assert_eq!(
        b.decrypt(&mut buf[..wire], now + REJECT_AFTER_TIME),
        Err(TransportError::Expired)
    );
    let (c, d) = pair(now);
    let wire = c.encrypt(&mut buf, 0, now).unwrap();
    d.invalidate();
    assert!(!d.is_valid());
    assert_eq!(
        d.decrypt(&mut buf[..wire], now),
        Err(TransportError::Expired)
    );
    assert_eq!(d.encrypt(&mut buf, 0, now), Err(TransportError::Expired));
    b.set_send_counter(REKEY_AFTER_MESSAGES);
    assert!(b.needs_rekey_on_send(now));
    b.set_send_counter(REJECT_AFTER_MESSAGES);
    assert_eq!(b.encrypt(&mut buf, 0, now), Err(TransportError::Expired));
    assert!(!b.can_send(now));
}

#[test]
fn concurrent_senders_never_reuse_a_counter() {
    let now = Instant::now();
    let (a, b) = pair(now);
    let a = std::sync::Arc::new(a);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                (0..2000)
                    .map(|i| {
                        let mut buf = vec![0u8; 64];
                        buf[16] = t;
                        buf[17] = i as u8;
                        let len = a.encrypt(&mut buf, 2, now).unwrap();
                        buf.truncate(len);
                        buf
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<Vec<u8>> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let mut counters: Vec<u64> = all
        .iter()
        .map(|m| u64::from_le_bytes(m[8..16].try_into().unwrap()))
        .collect();
    counters.sort_unstable();
    counters.dedup();
    assert_eq!(counters.len(), 8000, "every message has its own nonce");
    // Received in the order the threads happened to finish (out of order), all accepted once.
    all.reverse();
    for m in all.iter_mut() {
        assert_eq!(b.decrypt(m, now), Ok(16));
    }
}

// Found by mutation testing (scripts/mutants): accessors and limits no test looked at.

#[test]
fn accessors_report_the_session() {
    let now = Instant::now();
    let (a, b) = pair(now);
    assert_eq!((a.local_index(), a.remote_index()), (1, 2));
    assert_eq!((b.local_index(), b.remote_index()), (2, 1));
    assert!(a.is_initiator() && !b.is_initiator());
    assert!(a.is_valid() && b.is_valid(), "a new session is valid");
    assert!(a.can_send(now));
    assert_eq!(a.birth(), now);
}

/// The kernel refuses a counter at or past REJECT_AFTER_MESSAGES even when it authenticates
/// (receive.c, counter_validate): a peer that ran its counter out must rekey.
#[test]
fn an_authentic_message_at_reject_after_messages_is_refused() {
    let now = Instant::now();
    let (a, b) = pair(now);
    a.set_send_counter(REJECT_AFTER_MESSAGES - 1);
    let mut last = [0u8; 32];
    let wire = a.encrypt(&mut last, 0, now).unwrap();
    assert_eq!(
        b.decrypt(&mut last[..wire], now),
        Ok(0),
        "the last counter allowed"
    );
    // Seal the next counters by hand (encrypt refuses to): same key, same layout.
    for counter in [REJECT_AFTER_MESSAGES, REJECT_AFTER_MESSAGES + 1] {
        let mut msg = [0u8; 32];
        msg[..4].copy_from_slice(&[MESSAGE_TRANSPORT, 0, 0, 0]);
        msg[4..8].copy_from_slice(&2u32.to_le_bytes());
        msg[8..16].copy_from_slice(&counter.to_le_bytes());
        let tag = aead_key(&[1; 32])
            .seal_in_place_separate_tag(nonce(counter), Aad::empty(), &mut [])
            .unwrap();
        msg[16..].copy_from_slice(tag.as_ref());
        assert_eq!(
            b.decrypt(&mut msg, now),
            Err(TransportError::Replayed),
            "counter {counter}"
        );
    }
}

#[test]
fn only_the_initiator_rekeys_on_receive() {
    let now = Instant::now();
    let (a, b) = pair(now);
    let late = now + REJECT_AFTER_TIME - Duration::from_secs(1);
    assert!(a.needs_rekey_on_receive(late));
    assert!(!b.needs_rekey_on_receive(late));
}

#[test]
fn every_error_says_what_went_wrong() {
    let all = [
        TransportError::Expired,
        TransportError::BufferTooSmall,
        TransportError::Malformed,
        TransportError::Decrypt,
        TransportError::Replayed,
    ];
    let texts: std::collections::HashSet<String> = all.iter().map(|e| e.to_string()).collect();
    assert_eq!(texts.len(), all.len());
    assert!(texts.iter().all(|t| t.len() > 10), "{texts:?}");
}

/// A run of counters taken for a super-packet sealed on two threads: consecutive, never
/// shared with another run, and each message carries its own whatever order the halves
/// are sealed in.
#[test]
fn reserved_runs_are_consecutive_and_each_message_carries_its_counter() {
    let now = Instant::now();
    let (a, b) = pair(now);
    assert_eq!(a.reserve_counters(5, now), Ok(0));
    assert_eq!(a.reserve_counters(3, now), Ok(5));
    assert_eq!(a.sent_messages(), 8);
    // Sealed out of order (the second half first), opened in wire order.
    let mut wire = [[0u8; 64]; 3];
    for k in [2usize, 0, 1] {
        wire[k][16..32].fill(k as u8);
        assert_eq!(a.seal(&mut wire[k], 16, 5 + k as u64), Ok(48));
    }
    for (k, msg) in wire.iter_mut().enumerate() {
        assert_eq!(
            u64::from_le_bytes(msg[8..16].try_into().unwrap()),
            5 + k as u64
        );
        assert_eq!(b.decrypt(&mut msg[..48], now), Ok(16));
        assert!(msg[16..32].iter().all(|&x| x == k as u8));
    }
}

/// A run that would reach REJECT_AFTER_MESSAGES is refused whole, and leaves the counter
/// saturated so that no later run reuses a nonce.
#[test]
fn a_run_reaching_reject_after_messages_is_refused_and_saturates() {
    let now = Instant::now();
    let (a, _) = pair(now);
    a.set_send_counter(REJECT_AFTER_MESSAGES - 4);
    assert_eq!(a.reserve_counters(4, now), Ok(REJECT_AFTER_MESSAGES - 4));
    a.set_send_counter(REJECT_AFTER_MESSAGES - 4);
    assert_eq!(a.reserve_counters(5, now), Err(TransportError::Expired));
    assert_eq!(a.sent_messages(), REJECT_AFTER_MESSAGES);
    assert_eq!(a.reserve_counters(1, now), Err(TransportError::Expired));
    a.invalidate();
    a.set_send_counter(0);
    assert_eq!(a.reserve_counters(1, now), Err(TransportError::Expired));
}

/// Opening leaves the replay window to the caller (the receive path checks counters in
/// arrival order after opening a batch on two threads): a message opens twice, its counter
/// is accepted once, and a forged one never reaches the window.
#[test]
fn open_authenticates_without_touching_the_replay_window() {
    let now = Instant::now();
    let (a, b) = pair(now);
    let mut buf = [0u8; 48];
    a.encrypt(&mut buf, 16, now).unwrap();
    let sealed = buf;
    assert_eq!(b.open(&mut buf, now), Ok((16, 0)));
    let mut again = sealed;
    assert_eq!(b.open(&mut again, now), Ok((16, 0)));
    assert!(b.accept_counter(0));
    assert!(!b.accept_counter(0));
    let mut forged = sealed;
    forged[8] = 7;
    assert_eq!(b.open(&mut forged, now), Err(TransportError::Decrypt));
    assert!(
        b.accept_counter(7),
        "a forged counter must not have moved the window"
    );
}
