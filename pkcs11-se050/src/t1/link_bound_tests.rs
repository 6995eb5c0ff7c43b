//! Every call on the link ends within `max_response_time`, whatever the chip sends or
//! stops sending: found while writing the fuzz harness for the host link (issue 14).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::frame::{Frame, Pcb};
use super::link::{T1Link, T1Options};
use super::test_chip::{CountingDelay, TestChip};
use super::{ApduTransport, LinkError};

/// After the session's opening (RESYNCH, then an ATR with `bwt_ms`), answers each
/// write with the next of `replies` (raw bytes), going round them for ever; an empty
/// list means a chip that NACKs everything from then on, writes included.
fn cycling_chip(bwt_ms: u16, replies: Vec<Vec<u8>>) -> TestChip {
    TestChip::new(bwt_ms, replies, true)
}

/// Runs `calls` transceives on a thread, each timed; gives up (failing the test instead of
/// hanging it) if they are not all back within `patience`.
fn timed_calls(
    chip: TestChip,
    max_response_time: Duration,
    calls: usize,
    patience: Duration,
) -> Vec<(Result<Vec<u8>, LinkError>, Duration)> {
    let options = T1Options {
        initial_bwt: Duration::from_millis(5),
        max_response_time,
        ..T1Options::default()
    };
    let mut link = T1Link::open(chip, CountingDelay::default(), options).expect("open");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..calls {
            let started = Instant::now();
            let result = link
                .transceive(&[0x80, 0x01, 0x02, 0x03])
                .map(|r| r.to_vec());
            let _ = tx.send((result, started.elapsed()));
        }
    });
    let deadline = Instant::now() + patience;
    (0..calls)
        .map(|i| {
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("call {i} did not return within {patience:?}"))
        })
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    s.split(' ')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

#[test]
fn endless_empty_chain_links_end_in_a_clear_error() {
    // The frames: empty I-blocks with the more-data bit, N(S) 0 and 1 in turn.
    let frames = vec![hex("a5 20 00 95 d3"), hex("a5 60 00 f3 95")];
    assert_eq!(
        Frame::decode(&frames[0]).unwrap().pcb,
        Pcb::I { ns: 0, more: true }
    );
    // BWT 5 ms, overall 2 s: the bound on empty links must end it well before the time does.
    let results = timed_calls(
        cycling_chip(5, frames),
        Duration::from_secs(2),
        2,
        Duration::from_secs(20),
    );
    let (first, took) = &results[0];
    let err = first.clone().unwrap_err();
    assert!(
        matches!(err, LinkError::RetriesExhausted { .. }),
        "{err:?} after {took:?}"
    );
    assert!(err.to_string().contains("empty I-blocks"), "{err}");
    // The next call (the chip answers its RESYNCH with the chain again) is refused too:
    // the link, and the chip lock above it, were not left held.
    for (result, took) in &results {
        assert!(result.is_err(), "{result:?}");
        assert!(*took < Duration::from_millis(1500), "took {took:?}");
    }
}

#[test]
fn a_trickling_chain_is_cut_off_at_the_overall_limit() {
    // One data byte per link, for ever: every block is new data, so only the call's
    // deadline (or the response length limit) ends it. 300 ms here.
    let frames = (0..2u8)
        .map(|ns| {
            Frame::to_host(Pcb::I { ns, more: true }, &[0x42])
                .encode()
                .to_vec()
        })
        .collect();
    let limit = Duration::from_millis(300);
    let results = timed_calls(cycling_chip(5, frames), limit, 2, Duration::from_secs(30));
    let err = results[0].0.clone().unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::ResponseTimeout { .. } | LinkError::ResponseTooLong { .. }
        ),
        "{err:?}"
    );
    for (result, took) in &results {
        assert!(result.is_err(), "{result:?}");
        assert!(*took < limit * 4, "took {took:?}");
    }
}

#[test]
fn a_chip_that_stops_answering_fails_each_call_within_the_limit_whatever_its_bwt() {
    // The ATR announces the longest BWT there is (65.535 s), then the chip NACKs
    // everything: writes, reads, and the RESYNCH after the failure.
    let limit = Duration::from_millis(300);
    let results = timed_calls(
        cycling_chip(u16::MAX, vec![]),
        limit,
        3,
        Duration::from_secs(60),
    );
    for (result, took) in results {
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                LinkError::NotResponding { .. } | LinkError::ResponseTimeout { .. }
            ),
            "{err:?}"
        );
        // The limit, plus the slack of polling on a busy machine (the poll also counts its
        // polls, so overshooting sleeps can stretch it up to about twice the limit).
        assert!(took < limit * 4, "took {took:?} for a limit of {limit:?}");
    }
}

#[test]
fn a_frame_cut_off_after_its_header_fails_within_the_limit_whatever_its_bwt() {
    // A header announcing 10 bytes of INF, then silence: the body wait was one BWT.
    let limit = Duration::from_millis(300);
    let results = timed_calls(
        cycling_chip(u16::MAX, vec![vec![0xA5, 0x00, 0x0A]]),
        limit,
        2,
        Duration::from_secs(60),
    );
    for (result, took) in results {
        assert!(result.is_err(), "{result:?}");
        assert!(took < limit * 4, "took {took:?} for a limit of {limit:?}");
    }
}
